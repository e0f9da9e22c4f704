"""Where households live: towns with postcode areas, clustered postcodes, streets, schools, GPs."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# name, postcode area, DfE local-authority code, relative population
TOWNS: tuple[tuple[str, str, str, int], ...] = (
    ("London", "E", "316", 250), ("London", "N", "309", 180), ("London", "SE", "210", 230),
    ("London", "SW", "212", 200), ("Birmingham", "B", "330", 360), ("Leeds", "LS", "383", 250),
    ("Manchester", "M", "352", 220), ("Sheffield", "S", "373", 180), ("Bradford", "BD", "380", 170),
    ("Liverpool", "L", "341", 160), ("Bristol", "BS", "801", 150), ("Leicester", "LE", "856", 110),
    ("Coventry", "CV", "331", 100), ("Nottingham", "NG", "892", 100),
    ("Newcastle", "NE", "391", 95),
    ("Kingston upon Hull", "HU", "810", 85), ("Stoke-on-Trent", "ST", "861", 85),
    ("Plymouth", "PL", "879", 85), ("Southampton", "SO", "852", 80), ("Derby", "DE", "831", 80),
    ("Reading", "RG", "870", 60), ("Portsmouth", "PO", "851", 70), ("Norwich", "NR", "926", 50),
    ("York", "YO", "816", 65), ("Oxford", "OX", "931", 55), ("Cambridge", "CB", "873", 45),
    ("Exeter", "EX", "878", 45), ("Luton", "LU", "821", 70), ("Preston", "PR", "888", 50),
    ("Blackpool", "FY", "890", 45), ("Bolton", "BL", "350", 90), ("Wigan", "WN", "359", 100),
    ("Sunderland", "SR", "394", 90), ("Middlesbrough", "TS", "806", 45),
    ("Ipswich", "IP", "935", 45), ("Northampton", "NN", "928", 70), ("Swindon", "SN", "866", 70),
    ("Peterborough", "PE", "874", 65), ("Milton Keynes", "MK", "826", 80),
    ("Bournemouth", "BH", "837", 55), ("Brighton", "BN", "846", 85),
    ("Gloucester", "GL", "916", 40), ("Lincoln", "LN", "925", 30), ("Carlisle", "CA", "909", 25),
    ("Oldham", "OL", "353", 70), ("Wolverhampton", "WV", "336", 80), ("Walsall", "WS", "335", 85),
)

_LOCALITIES = (
    "Westfield", "Northfield", "Oakwood", "Hillside", "Moorside", "Brookside", "Fairfield",
    "Ashfield", "Parkside", "Meadowbank", "Riverside", "Kingsway", "Highfield", "Woodlands",
    "Greenhill", "Newtown", "Old Town", "Stonebridge", "Millbrook", "Chapel End",
)
_STREET_NAMES = (
    "Church", "Station", "Victoria", "Park", "Green", "Manor", "Kings", "Queens", "Grange", "Mill",
    "School", "Chapel", "Springfield", "Windsor", "Albert", "Church Hill", "Highfield", "York",
    "Stanley", "Elm", "Oak", "Beech", "Ash", "Willow", "Cedar", "Meadow", "Orchard", "Castle",
    "North", "South", "West", "Hawthorn", "Holly", "Rose", "Alexandra", "Mount", "Richmond",
    "Nelson", "Cromwell", "Marlborough", "Lansdowne", "Wellington", "Cavendish", "Salisbury",
)
_STREET_TYPES = ("Road", "Street", "Avenue", "Close", "Lane", "Drive", "Way", "Crescent", "Grove",
                 "Gardens", "Terrace", "Place")
_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_SCATTER = 7_919  # a prime, coprime with every (districts x 9 sectors x 400 units) space
_HOUSEHOLDS_PER_POSTCODE = 12
_PUPILS_PER_PRIMARY = 260
_PUPILS_PER_SECONDARY = 1000
_PATIENTS_PER_PRACTICE = 1500  # children per GP practice


@dataclass(frozen=True, slots=True)
class Address:
    """A household's address as the feeds print it (title case, one postcode space)."""

    line1: str
    line2: str | None
    town: str
    postcode: str
    town_index: int


@dataclass(frozen=True, slots=True)
class Town:
    """A town scaled to the population: how many postcodes, schools and practices it has."""

    index: int
    name: str
    area: str
    la_code: str
    districts: int
    postcodes: int
    primaries: tuple[str, ...]
    secondaries: tuple[str, ...]
    practices: tuple[str, ...]


class Geography:
    """Towns sized for `children` children, so unrelated households share postcodes and towns."""

    def __init__(self, children: int) -> None:
        total_weight = sum(weight for *_, weight in TOWNS)
        self.weights: tuple[int, ...] = tuple(weight for *_, weight in TOWNS)
        towns = []
        next_urn = 100_001
        for index, (name, area, la_code, weight) in enumerate(TOWNS):
            town_children = children * weight / total_weight
            primaries = max(2, round(town_children * 7 / 18 / _PUPILS_PER_PRIMARY))
            secondaries = max(1, round(town_children * 7 / 18 / _PUPILS_PER_SECONDARY))
            urns = [str(next_urn + i) for i in range(primaries + secondaries)]
            next_urn += primaries + secondaries
            practices = max(2, round(town_children / _PATIENTS_PER_PRACTICE))
            letter = "ABCDEFGHJKLMNPQRSTUVWXY"[index % 23]
            towns.append(Town(
                index=index, name=name, area=area, la_code=la_code,
                districts=max(2, min(28, weight // 12)),
                postcodes=max(40, round(town_children / 1.8 / _HOUSEHOLDS_PER_POSTCODE)),
                primaries=tuple(urns[:primaries]), secondaries=tuple(urns[primaries:]),
                practices=tuple(f"{letter}{index * 1000 + i:05d}" for i in range(practices)),
            ))
        self.towns: tuple[Town, ...] = tuple(towns)

    def address(self, town_index: int, postcode_index: int, house_number: int) -> Address:
        """The address of house `house_number` in the town's `postcode_index`-th postcode unit."""
        town = self.towns[town_index]
        # spread the town's postcodes over all its districts, sectors and unit letters
        code = (postcode_index * _SCATTER) % (town.districts * 9 * 400)
        district = code % town.districts + 1
        sector = (code // town.districts) % 9 + 1
        unit = code // (town.districts * 9)
        letters = _UNIT_LETTERS[unit // 20] + _UNIT_LETTERS[unit % 20]
        postcode = f"{town.area}{district} {sector}{letters}"
        key = zlib.crc32(postcode.encode())
        street = f"{_STREET_NAMES[key % len(_STREET_NAMES)]} " \
                 f"{_STREET_TYPES[(key >> 8) % len(_STREET_TYPES)]}"
        locality = _LOCALITIES[zlib.crc32(f"{town.area}{district}".encode()) % len(_LOCALITIES)]
        line2 = locality if key % 3 else None
        return Address(f"{house_number} {street}", line2, town.name, postcode, town_index)
