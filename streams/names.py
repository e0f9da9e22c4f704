"""UK forename diminutives (shared by the generator, which injects them, and the adapters, which
map them back to a standard form for the linkage model)."""

from __future__ import annotations

# formal name -> its common diminutives (upper case). A diminutive listed under two formal names
# (CHARLIE, ALEX, SAM, HARRY, KATIE, ...) stands for the formal name listed LAST, the more common
# one among children, because the mapping below keeps the last entry. Diminutives that are also
# common names in their own right for the other sex (RUBY, ELLA, ELLIE for Elliot) are left out.
DIMINUTIVES: dict[str, tuple[str, ...]] = {
    "ALFRED": ("ALFIE", "ALF"),
    "ISABEL": ("IZZY", "ISSY"),
    "ISABELLE": ("BELLE", "IZZY", "ISSY"),
    "ISABELLA": ("BELLA", "IZZY", "ISSY"),
    "OLIVER": ("OLLIE", "OLLY"),
    "WILLIAM": ("WILL", "BILLY", "LIAM"),
    "ELIZABETH": ("LIZZIE", "BETH", "ELIZA", "LIBBY", "LIZ"),
    "THOMAS": ("TOM", "TOMMY"),
    "JAMES": ("JAMIE", "JIM", "JIMMY"),
    "CHARLOTTE": ("LOTTIE", "CHARLIE"),
    "ALEXANDRA": ("ALEX", "LEXI", "SASHA"),
    "ALEXANDER": ("ALEX", "ZANDER"),
    "SAMANTHA": ("SAM", "SAMMY"),
    "SAMUEL": ("SAM", "SAMMY"),
    "CHARLES": ("CHARLIE", "CHAS"),
    "ARCHIBALD": ("ARCHIE",),
    "HARRISON": ("HARRY",),
    "HENRY": ("HARRY", "HAL"),
    "FREDERICK": ("FREDDIE", "FREDDY", "FRED"),
    "EDWARD": ("ED", "EDDIE", "TED", "NED"),
    "BENJAMIN": ("BEN", "BENNY"),
    "JOSEPH": ("JOE", "JOEY"),
    "JOSHUA": ("JOSH",),
    "DANIEL": ("DAN", "DANNY"),
    "MATTHEW": ("MATT", "MATTY"),
    "CHRISTOPHER": ("CHRIS", "KIT"),
    "NICHOLAS": ("NICK", "NICKY"),
    "JONATHAN": ("JON", "JONNY"),
    "MICHAEL": ("MIKE", "MICKEY"),
    "ANTHONY": ("TONY", "ANT"),
    "ROBERT": ("ROB", "BOBBY", "ROBBIE"),
    "RICHARD": ("RICH", "RICKY"),
    "STEPHEN": ("STEVE",),
    "ANDREW": ("ANDY", "DREW"),
    "PATRICK": ("PADDY", "PAT"),
    "DOMINIC": ("DOM",),
    "SEBASTIAN": ("SEB", "SEBBY"),
    "THEODORE": ("THEO", "TEDDY"),
    "STANLEY": ("STAN",),
    "LOUIS": ("LOUIE",),
    "ZACHARY": ("ZAC", "ZAK", "ZACH"),
    "NATHANIEL": ("NATE", "NAT"),
    "NATHAN": ("NATE",),
    "GABRIEL": ("GABE",),
    "TOBIAS": ("TOBY",),
    "RONALD": ("RONNIE",),
    "MOHAMMED": ("MO",),
    "MUHAMMAD": ("MO",),
    "ABIGAIL": ("ABBIE", "ABBY", "ABI"),
    "AMELIA": ("MILLIE", "MILLY", "MELIA"),
    "EMILY": ("EM", "EMMY"),
    "EMMA": ("EM", "EMMIE"),
    "ELLEN": ("ELLIE", "NELL"),
    "ELEANOR": ("ELLIE", "NELL", "NELLIE", "NORA"),
    "EVELYN": ("EVIE", "EVE"),
    "GEORGINA": ("GEORGIE", "GINA"),
    "GEORGIA": ("GEORGIE",),
    "GEORGE": ("GEORGIE",),
    "HARRIET": ("HATTIE", "HARRIE"),
    "CATHERINE": ("CATH", "CATE", "KATIE"),
    "KATHERINE": ("KATIE", "KATE", "KATY", "KAT"),
    "MARGARET": ("MAISIE", "MEG", "MAGGIE", "PEGGY"),
    "MATILDA": ("TILLY", "TILDA", "MATTIE"),
    "REBECCA": ("BECKY", "BECCA", "BEX"),
    "SOPHIA": ("SOPHIE", "SOPH"),
    "SOPHIE": ("SOPH",),
    "JESSICA": ("JESS", "JESSIE"),
    "VICTORIA": ("VICKY", "TORI", "TORY"),
    "NATASHA": ("TASHA", "TASH"),
    "GABRIELLA": ("GABBY", "GABI"),
    "FRANCESCA": ("FRANKIE", "CHESCA"),
    "FRANCIS": ("FRANKIE", "FRANK"),
    "FLORENCE": ("FLO", "FLOSSIE"),
    "MADELEINE": ("MADDIE", "MADDY"),
    "MADISON": ("MADDIE", "MADDY"),
    "JENNIFER": ("JENNY", "JEN"),
    "STEPHANIE": ("STEPH",),
    "KIMBERLEY": ("KIM",),
    "DANIELLE": ("DANI",),
    "LAUREN": ("LAURIE",),
    "ROSALIND": ("ROSIE", "ROS"),
    "ROSE": ("ROSIE",),
    "MARY": ("MOLLY", "POLLY", "MAE"),
    "DOROTHY": ("DOTTY", "DOT"),
    "SUSANNAH": ("SUSIE", "SUE"),
    "HANNAH": ("HANNIE",),
    "LYDIA": ("LYDDIE",),
    "AMBER": ("AMBS",),
    "SARAH": ("SAL", "SALLY"),
    "LOUISE": ("LOU", "LULU"),
    "LUCY": ("LU",),
}

_STANDARD_FORM: dict[str, str] = {
    diminutive: formal for formal, forms in DIMINUTIVES.items() for diminutive in forms
}


def standard_first_name(name: str | None) -> str | None:
    """The formal name a diminutive stands for (ALFIE -> ALFRED); other names unchanged."""
    if name is None:
        return None
    return _STANDARD_FORM.get(name, name)
