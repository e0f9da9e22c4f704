"""UK forename diminutives (shared by the generator, which injects them, and the adapters, which
map them back to a standard form for the linkage model)."""

from __future__ import annotations

# formal name -> its common diminutives (upper case)
DIMINUTIVES: dict[str, tuple[str, ...]] = {
    "ALFRED": ("ALFIE", "ALF"),
    "ISABELLA": ("BELLA", "IZZY", "ISSY"),
    "OLIVER": ("OLLIE", "OLLY"),
    "WILLIAM": ("WILL", "BILLY", "LIAM"),
    "ELIZABETH": ("LIZZIE", "BETH", "ELIZA", "LIBBY"),
    "THOMAS": ("TOM", "TOMMY"),
    "JAMES": ("JAMIE", "JIM"),
    "CHARLOTTE": ("LOTTIE", "CHARLIE"),
    "ALEXANDER": ("ALEX", "ZANDER"),
    "SAMUEL": ("SAM", "SAMMY"),
}

_STANDARD_FORM: dict[str, str] = {
    diminutive: formal for formal, forms in DIMINUTIVES.items() for diminutive in forms
}


def standard_first_name(name: str | None) -> str | None:
    """The formal name a diminutive stands for (ALFIE -> ALFRED); other names unchanged."""
    if name is None:
        return None
    return _STANDARD_FORM.get(name, name)
