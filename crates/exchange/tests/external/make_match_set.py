#!/usr/bin/env python3
"""Generate a labelled patient-matching test set (FHIR R4 Patient resources).

The output is ONE JSON document:

    {"seed": 7, "generator": "make_match_set.py", "records": [
      {"key": "r000001", "person": "p000123", "role": "original",
       "errors": [], "patient": {...FHIR R4 Patient, no "id"...}}, ...]}

Records that share `person` are the same human (true matches); records with
different `person` are different humans (true non-matches).  Roles:

  original   a base person, registered at the "Synthea" organization: MRN with
             system https://github.com/synthetichealth/synthea (type MR), SSN
             (system http://hl7.org/fhir/sid/us-ssn, 999-XX-XXXX), a driver's
             licence (urn:oid:2.16.840.1.113883.4.3.25) for ~70% of adults,
             e-mail ~40%, middle name ~50%, marital status, one address, a phone.
  duplicate  the same person registered at ANOTHER organization (another MRN
             system and value, see ORGS) with 1-3 registration errors, each
             named in `errors`: typo-given, typo-family, nickname,
             transposed-dob, dob-digit, moved, new-phone, married-surname,
             missing-ssn, no-middle, case-punct, hyphenated, missing-phone,
             missing-email, address-format.  In addition ~20% of duplicates
             drop the driver's licence; that is recorded as "missing-dl" (not
             counted among the 1-3 errors).  About 35% of duplicates lack the
             SSN, always recorded as "missing-ssn".  Combinations that a
             careful registrar could not match are rejected (see `plausible`).
  twin       a different person: same birth date, family name, address and
             phone as an original; another given name; own SSN and MRN.
  namesake   a different person: same given and family name and birth year as
             an original, another birth day, address, phone and SSN
             (sometimes the same city).

Name and address sources:
  * The Synthea sample in testdata/synthea (Patient and Practitioner names with
    Synthea's digits stripped; Patient, Practitioner and Organization
    addresses).  Synthea sample data: Apache 2.0 (synthetichealth/synthea).
  * COMMON_SURNAMES: ~360 of the most frequent surnames of the US Census Bureau's
    2010 census surname table ("Frequently Occurring Surnames from the 2010
    Census", https://www.census.gov/topics/population/genealogy/data/2010_surnames.html),
    in rank order, compiled by hand; a US Government work, public domain.  The
    sampling weights are a Zipf fit (weight ~ 1/rank) to the published counts,
    not the exact counts, so Smith, Johnson, Williams... are the most common.
  * MALE_NAMES / FEMALE_NAMES: ~200 given names per sex compiled by hand from
    the Social Security Administration's national baby-name popularity lists
    (top names of the 1930s-2010s decades, https://www.ssa.gov/oact/babynames/),
    a US Government work, public domain; ranks approximate, weights Zipf-like.
  * crates/matching/data/nicknames.csv (Apache 2.0, see SOURCES.md there) for
    the "nickname" error, crates/matching/data/street_suffixes.csv (USPS Pub 28,
    public domain) for street suffix spellings.

Everything is drawn from random.Random(seed), so the output is a pure function
of the command-line arguments and the input files.  Standard library only.

Usage:
    python3 make_match_set.py --seed 7 --people 2000 --duplicates 1000 \
        --twins 150 --namesakes 150 --out match_set.json
    python3 make_match_set.py --people 100000 --duplicates 0 --twins 0 \
        --namesakes 0 --out big.json          # latency benchmark population
"""

import argparse
import bisect
import collections
import datetime
import glob
import itertools
import json
import os
import random
import re
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", "..", ".."))

MRN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "code": "MR", "display": "Medical Record Number"}],
            "text": "Medical Record Number"}
SSN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "code": "SS", "display": "Social Security Number"}],
            "text": "Social Security Number"}
DL_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                       "code": "DL", "display": "Driver's license number"}],
           "text": "Driver's license number"}
SYNTHEA_MRN = "https://github.com/synthetichealth/synthea"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
DL_SYSTEM = "urn:oid:2.16.840.1.113883.4.3.25"

# Organizations at which duplicates are registered: (MRN system, name, value style).
ORGS = [
    ("urn:oid:1.2.36.146.595.217.0.1", "Acme Healthcare", "digits8"),
    ("http://hospital.example.org/mrn", "Example General Hospital", "prefixed"),
    ("urn:oid:2.16.840.1.113883.19.5", "Good Health Clinic", "digits7"),
    ("https://records.northshore.example/patient", "North Shore Medical Center", "alnum"),
    ("http://clinic.example.com/mrn", "Riverside Family Clinic", "digits6"),
]

MARITAL = [("M", "Married", 40), ("S", "Never Married", 35), ("D", "Divorced", 12),
           ("W", "Widowed", 8), ("L", "Legally Separated", 2), ("U", "unmarried", 3)]

COMMON_SURNAMES = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson
White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres
Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez
Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook
Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward
Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez
Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell
Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander
Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran
Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods
Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson
Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner
Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson
Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce
Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong Hudson Carroll
Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards
Contreras Willis Carpenter Lawrence Sandoval Guerrero George Chapman Rios Estrada Ortega Watkins
Greene Nunez Wheeler Valdez Harper Burke Larson Santiago Maldonado Morrison Franklin Carlson Austin
Dominguez Carr Lawson Jacobs O'Brien Lynch Singh Vega Bishop Montgomery Oliver Jensen Harvey
Williamson Gilbert Dean Sims Espinoza Howell Li Wong Reid Hanson Le McCoy Garrett Burton Fuller
Wang Weber Welch Rojas Lucas Marquez Fields Park Yang Little Banks Padilla Day Walsh Bowman Schultz
Luna Fowler Mejia Davidson Acosta Brewer May Holland Juarez Newman Pearson Curtis Cortez Douglas
Schneider Joseph Barrett Navarro Figueroa Keller Avila Wade Molina Stanley Hopkins Campos Barnett
Bates Chambers Caldwell Beck Lambert Miranda Byrd Craig Ayala Lowe Frazier Powers Neal Leonard
Gregory Carrillo Sutton Fleming Rhodes Shelton Schwartz Norris Jennings Watts Duran Walters Cohen
McDaniel Moran Parks Steele Vaughn Becker Holt Deleon Barker Terry Hale Leon O'Connor O'Neill
McCarthy""".split()

MALE_NAMES = """James John Robert Michael William David Richard Joseph Thomas Charles Christopher
Daniel Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy
Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott
Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Jose
Adam Nathan Henry Douglas Zachary Peter Kyle Ethan Walter Noah Jeremy Christian Keith Roger Terry
Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse Jordan Bryan Billy Joe Bruce Gabriel
Logan Albert Willie Alan Juan Wayne Elijah Randy Roy Vincent Ralph Eugene Russell Bobby Mason
Philip Louis Harry Howard Fred Liam Luis Carlos Aiden Jayden Caleb Isaac Luke Owen Connor Evan
Hunter Jackson Lucas Oliver Francis Stanley Leonard Norman Earl Clarence Ernest Herbert Melvin
Lloyd Glenn Marvin Leroy Dale Curtis Allen Victor Martin Todd Craig Shawn Chad Travis Derek Marcus
Cody Corey Brett Jared Seth Trevor Cameron Colin Ian Blake Chase Garrett Cole Wyatt Carter
Sebastian Mateo Leo Grayson Levi Julian Miguel Antonio Angel Diego Alejandro Ricardo Manuel Rafael
Marco Andre Rene Ramon Jesus Nicolas Edwin Wesley Alex Theodore Max Hudson Eli Lincoln Ezra Asher
Jaxon Landon Brayden Xavier Dominic Adrian Joel Noel""".split()

FEMALE_NAMES = """Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa
Nancy Betty Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa
Deborah Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela
Emma Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet Catherine Maria Heather
Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren Christina Joan Evelyn Judith Megan
Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Madison Frances Kathryn Janice Jean
Abigail Alice Judy Sophia Grace Denise Amber Doris Marilyn Danielle Beverly Isabella Theresa Diana
Natalie Brittany Charlotte Marie Kayla Alexis Lori Ava Mia Harper Amelia Ella Chloe Zoe Lily Avery
Sofia Camila Aria Scarlett Layla Riley Nora Hazel Aubrey Addison Brooklyn Leah Stella Savannah
Audrey Claire Lucy Paisley Everly Caroline Genesis Kennedy Allison Gabriella Alexa Ariana Violet
Peggy Dolores Mildred Irene Rose Louise Lillian Florence Edna Gladys Ethel Thelma Josephine Eleanor
Phyllis Norma Lois Wanda Rita Carmen Jane Marjorie Connie Tammy Tina Dawn Wendy Rhonda Tracy Stacy
Holly Erin Kristen Crystal April Tiffany Jasmine Erica Monica Vanessa Courtney Kristin Renee
Valerie Joanne Suzanne Gina Sheila Yolanda Lucia Ines Rosa Ana Guadalupe Veronica Alicia Elena
Isabel Sylvia Claudia Noelle""".split()

ACCENTED = {"jose": "José", "zoe": "Zoë", "renee": "Renée", "andre": "André", "chloe": "Chloé",
            "noel": "Noël", "rene": "René", "ines": "Inés", "maria": "María", "sofia": "Sofía",
            "lucia": "Lucía", "angel": "Ángel", "jesus": "Jesús", "ramon": "Ramón",
            "nicolas": "Nicolás", "elena": "Eléna", "noelle": "Noëlle", "munoz": "Muñoz",
            "pena": "Peña", "nunez": "Núñez", "ramirez": "Ramírez", "rodriguez": "Rodríguez",
            "gonzalez": "González", "hernandez": "Hernández", "lopez": "López", "perez": "Pérez",
            "sanchez": "Sánchez", "martinez": "Martínez", "garcia": "García", "gomez": "Gómez",
            "diaz": "Díaz", "jimenez": "Jiménez", "alvarez": "Álvarez", "fernandez": "Fernández",
            "marquez": "Márquez", "dominguez": "Domínguez", "gutierrez": "Gutiérrez",
            "vasquez": "Vásquez", "vazquez": "Vázquez", "mendez": "Méndez", "juarez": "Juárez"}

KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
NEIGHBOURS = collections.defaultdict(str)
for _r, _row in enumerate(KEYBOARD):
    for _c, _ch in enumerate(_row):
        for _dr in (-1, 0, 1):
            for _dc in (-1, 0, 1):
                _rr, _cc = _r + _dr, _c + _dc
                if (_dr or _dc) and 0 <= _rr < 3 and 0 <= _cc < len(KEYBOARD[_rr]):
                    NEIGHBOURS[_ch] += KEYBOARD[_rr][_cc]

TODAY = datetime.date(2026, 12, 7)

APPLY_ORDER = ["missing-ssn", "married-surname", "hyphenated", "nickname", "typo-given",
               "typo-family", "no-middle", "case-punct", "transposed-dob", "dob-digit",
               "moved", "address-format", "new-phone", "missing-phone", "missing-email"]


# ---------------------------------------------------------------- helpers

class Weighted:
    """A list of items with cumulative weights, sampled with bisect (fast)."""

    def __init__(self, items, weights):
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))

    def pick(self, rng):
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


def zipf(items, s=1.0, offset=1.5):
    return Weighted(items, [1.0 / (i + offset) ** s for i in range(len(items))])


def strip_digits(s):
    return re.sub(r"\d+", "", s or "").strip()


def title(s):
    """Title-case a word while keeping O'Brien / McDonald / hyphen forms."""
    out = []
    for part in re.split(r"([\- '])", s.lower()):
        if part[:2] == "mc" and len(part) > 2:
            out.append("Mc" + part[2:].capitalize())
        else:
            out.append(part.capitalize())
    return "".join(out)


def load_csv_table(path, min_fields=2):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [x.strip().strip('"') for x in line.split(",")]
            if len(fields) >= min_fields:
                rows.append(fields)
    return rows


def load_nicknames(path):
    """canonical -> [nicks]; also nick -> [canonicals] for the reverse direction."""
    fwd, rev = {}, collections.defaultdict(list)
    for row in load_csv_table(path):
        fwd[row[0]] = row[1:]
        for n in row[1:]:
            rev[n].append(row[0])
    return fwd, rev


def load_suffixes(path):
    """variant -> standard abbreviation, and standard -> preferred long form."""
    var2std = {}
    long_form = {}
    for v, s in load_csv_table(path):
        var2std.setdefault(v, s)
    # the long (primary) form: the longest variant that is a plain word
    for v, s in var2std.items():
        if s not in long_form or len(v) > len(long_form[s]):
            long_form[s] = v
    for s, v in [("st", "street"), ("ave", "avenue"), ("rd", "road"), ("dr", "drive"),
                 ("ln", "lane"), ("ct", "court"), ("pl", "place"), ("blvd", "boulevard"),
                 ("ter", "terrace"), ("cir", "circle"), ("hwy", "highway"), ("pkwy", "parkway")]:
        long_form[s] = v
    return var2std, long_form


# ---------------------------------------------------------------- input pools

def load_synthea(dirs, var2std):
    """Names by sex, family names and (street body, suffix) / (city, state, zip) pools."""
    given = {"male": set(), "female": set()}
    family = set()
    streets = set()
    places = set()
    states = {"massachusetts": "MA"}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.json"))):
            with open(path, encoding="utf-8") as f:
                bundle = json.load(f)
            for entry in bundle.get("entry", []):
                res = entry.get("resource", {})
                rt = res.get("resourceType")
                if rt not in ("Patient", "Practitioner", "Organization"):
                    continue
                names = res.get("name") if isinstance(res.get("name"), list) else []
                for n in names:
                    fam = strip_digits(n.get("family"))
                    if fam and fam.isascii() and len(fam) > 1:
                        family.add(title(fam))
                    g = res.get("gender")
                    if g in given:
                        for gv in n.get("given", [])[:1]:
                            gv = strip_digits(gv)
                            if gv and gv.isascii() and len(gv) > 1:
                                given[g].add(title(gv))
                for a in res.get("address", []) or []:
                    city, state, zipc = a.get("city"), a.get("state"), a.get("postalCode")
                    if city and state and zipc:
                        state = states.get(state.lower(), state.upper())
                        z = re.sub(r"\D", "", zipc)[:5].rjust(5, "0")
                        places.add((title(city), state, z))
                    for line in a.get("line", []) or []:
                        s = parse_street(line, var2std)
                        if s:
                            streets.add(s)
    return ({k: sorted(v) for k, v in given.items()}, sorted(family), sorted(streets),
            sorted(places))


UNIT_WORDS = {"apt", "apartment", "unit", "ste", "suite", "#", "fl", "floor", "rm", "room",
              "bldg", "building"}


def parse_street(line, var2std):
    """'290 Dicki Wall Unit 99' -> ('Dicki', 'wall'); None if it does not parse."""
    toks = line.replace(",", " ").split()
    if len(toks) < 2 or not toks[0][0].isdigit():
        return None
    toks = toks[1:]
    for i, t in enumerate(toks):
        if t.lower() in UNIT_WORDS and i > 0:
            toks = toks[:i]
            break
    if not toks:
        return None
    suffix = None
    if len(toks) > 1 and toks[-1].lower().rstrip(".") in var2std:
        suffix = var2std[toks[-1].lower().rstrip(".")]
        toks = toks[:-1]
    body = " ".join(title(t) for t in toks)
    if not body or any(ch.isdigit() for ch in body) or suffix is None:
        return None
    return (body, suffix)


# ---------------------------------------------------------------- generator

class Gen:
    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.var2std, self.long_form = load_suffixes(args.suffixes)
        self.nick_fwd, self.nick_rev = load_nicknames(args.nicknames)
        dirs = [os.path.join(args.synthea, d) for d in ("smart-2019", "synthea-v3")]
        sgiven, sfamily, streets, places = load_synthea(dirs, self.var2std)
        if not streets or not places:
            sys.exit("no Synthea addresses found under %s" % args.synthea)
        self.synthea_given = sgiven
        self.synthea_family = sfamily
        self.given = {"male": zipf(MALE_NAMES, s=0.8), "female": zipf(FEMALE_NAMES, s=0.8)}
        # s=0.6 gives Smith/rank-300 about 30:1, close to the Census 2010 counts
        self.family = zipf(COMMON_SURNAMES, s=0.6, offset=1.0)
        # street bodies from Synthea recombined with common suffixes
        self.street_bodies = sorted({b for b, _ in streets})
        suffix_counts = collections.Counter(s for _, s in streets)
        for s in ("st", "ave", "rd", "dr", "ln", "ct", "way", "pl", "blvd", "cir", "ter"):
            suffix_counts[s] += 5
        self.suffixes = Weighted(sorted(suffix_counts), [suffix_counts[k] for k in sorted(suffix_counts)])
        self.places = places
        self.used_ssn = set()
        self.used_dl = set()
        self.used_mrn = set()
        self.stats_streets = len(streets)

    # --- atoms
    def pick_given(self, sex):
        r = self.rng
        if r.random() < 0.15 and self.synthea_given[sex]:
            return r.choice(self.synthea_given[sex])
        return self.given[sex].pick(r)

    def pick_family(self):
        r = self.rng
        x = r.random()
        if x < 0.15:
            return r.choice(self.synthea_family)
        fam = self.family.pick(r)
        if x > 0.94:  # compound surname (about 5%)
            other = self.family.pick(r)
            if other != fam:
                fam = fam + ("-" if r.random() < 0.6 else " ") + other
        return fam

    def unique(self, used, make):
        while True:
            v = make()
            if v not in used:
                used.add(v)
                return v

    def new_ssn(self):
        r = self.rng
        return self.unique(self.used_ssn, lambda: "999-%02d-%04d" % (r.randrange(10, 100), r.randrange(1, 10000)))

    def new_dl(self):
        r = self.rng
        return self.unique(self.used_dl, lambda: "S99%06d" % r.randrange(1000000))

    def new_mrn(self, style="uuid"):
        r = self.rng
        if style == "uuid":
            make = lambda: str(uuid.UUID(int=r.getrandbits(128), version=4))
        elif style == "digits8":
            make = lambda: "%08d" % r.randrange(10 ** 8)
        elif style == "digits7":
            make = lambda: "%07d" % r.randrange(10 ** 7)
        elif style == "digits6":
            make = lambda: "%06d" % r.randrange(10 ** 6)
        elif style == "prefixed":
            make = lambda: "MRN-%d" % r.randrange(100000, 10000000)
        else:
            make = lambda: "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(9))
        return self.unique(self.used_mrn, make)

    def new_phone(self):
        r = self.rng
        return "555%03d%04d" % (r.randrange(200, 1000), r.randrange(10000))

    def fmt_phone(self, digits):
        a, b, c = digits[:3], digits[3:6], digits[6:]
        x = self.rng.random()
        if x < 0.55:
            return "%s-%s-%s" % (a, b, c)
        if x < 0.75:
            return "(%s) %s-%s" % (a, b, c)
        if x < 0.85:
            return "%s.%s.%s" % (a, b, c)
        if x < 0.95:
            return digits
        return "+1 %s %s %s" % (a, b, c)

    def new_address(self, exclude_city=None, city=None):
        r = self.rng
        while True:
            place = r.choice(self.places)
            if city and r.random() < 0.9:
                cands = [p for p in self.places if p[0] == city]
                place = r.choice(cands)
            if place[0] != exclude_city:
                break
        number = str(int(r.paretovariate(0.9) * 10) if r.random() < 0.6 else r.randrange(1, 9999))
        number = str(min(int(number), 99999))
        addr = {
            "number": number,
            "body": r.choice(self.street_bodies),
            "suffix": self.suffixes.pick(r),
            "long": r.random() < 0.7,
            "unit": None,
            "city": place[0], "state": place[1], "zip": place[2], "zip4": None,
        }
        if r.random() < 0.22:
            addr["unit"] = (r.choice(["Apt", "Apt", "Apt", "Unit", "Suite", "#"]),
                            str(r.randrange(1, 400)) if r.random() < 0.85 else r.choice("ABCDEF"))
        if r.random() < 0.1:
            addr["zip4"] = "%04d" % r.randrange(10000)
        return addr

    def render_address(self, a):
        suf = self.long_form.get(a["suffix"], a["suffix"]) if a["long"] else a["suffix"]
        line = "%s %s %s" % (a["number"], a["body"], title(suf))
        if a["unit"]:
            kind, num = a["unit"]
            line += (" #%s" % num) if kind == "#" else (" %s %s" % (kind, num))
        out = {"use": "home", "line": [line], "city": a["city"], "state": a["state"],
               "postalCode": a["zip"] + ("-" + a["zip4"] if a["zip4"] else ""), "country": "US"}
        return out

    def birth_date(self):
        r = self.rng
        start = datetime.date(1930, 1, 1).toordinal()
        end = datetime.date(2020, 12, 31).toordinal()
        return datetime.date.fromordinal(r.randrange(start, end + 1))

    # --- people
    def make_person(self, sex=None, given=None, family=None, birth=None):
        r = self.rng
        sex = sex or ("female" if r.random() < 0.51 else "male")
        birth = birth or self.birth_date()
        age = (TODAY - birth).days // 365
        p = {
            "sex": sex,
            "given": given or self.pick_given(sex),
            "middle": None,
            "family": family or self.pick_family(),
            "birth": birth,
            "ssn": self.new_ssn(),
            "dl": self.new_dl() if age >= 16 and r.random() < 0.7 else None,
            "phone": self.new_phone() if r.random() < 0.93 else None,
            "email": None,
            "address": self.new_address(),
            "marital": None,
            "mrn_system": SYNTHEA_MRN, "mrn": self.new_mrn("uuid"), "org": None,
        }
        if r.random() < 0.5:
            m = self.pick_given(sex)
            if m != p["given"]:
                p["middle"] = m
        if age >= 18:
            codes = MARITAL
            p["marital"] = r.choices([c[:2] for c in codes], [c[2] for c in codes])[0]
        else:
            p["marital"] = ("S", "Never Married")
        if r.random() < 0.4:
            p["email"] = self.make_email(p)
        return p

    def make_email(self, p):
        r = self.rng
        g = re.sub(r"[^a-z]", "", p["given"].lower())
        f = re.sub(r"[^a-z]", "", p["family"].lower())
        user = r.choice(["%s.%s" % (g, f), "%s%s" % (g[:1], f), "%s_%s%d" % (g, f, r.randrange(100)),
                         "%s%s%d" % (g, f[:1], r.randrange(1000))])
        return "%s@%s" % (user, r.choice(["example.com", "example.org", "example.net", "mail.example.com"]))

    def to_fhir(self, p):
        """Build a FHIR R4 Patient (shaped like the Synthea sample's) from a person dict."""
        r = self.rng
        org = p.get("org")
        mrn = {"type": MRN_TYPE, "system": p["mrn_system"], "value": p["mrn"]}
        if org:
            mrn["assigner"] = {"display": org}
        ids = [mrn]
        if p["ssn"]:
            ids.append({"type": SSN_TYPE, "system": SSN_SYSTEM, "value": p["ssn"]})
        if p["dl"]:
            ids.append({"type": DL_TYPE, "system": DL_SYSTEM, "value": p["dl"]})
        given = [p["given"]] + ([p["middle"]] if p["middle"] else [])
        name = {"use": "official", "family": p["family"], "given": given}
        age = (TODAY - p["birth"]).days // 365
        if age >= 18 and r.random() < 0.8:
            if p["sex"] == "male":
                name["prefix"] = ["Mr."]
            else:
                name["prefix"] = ["Mrs." if p["marital"][0] in ("M", "W") else "Ms."]
        names = [name]
        if p.get("maiden"):
            names.append({"use": "maiden", "family": p["maiden"], "given": given})
        pat = {"resourceType": "Patient",
               "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
               "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                              "valueCode": "F" if p["sex"] == "female" else "M"}],
               "identifier": ids, "name": names}
        tel = []
        if p["phone"]:
            tel.append({"system": "phone", "value": self.fmt_phone(p["phone"]), "use": "home"})
        if p["email"]:
            tel.append({"system": "email", "value": p["email"]})
        if tel:
            pat["telecom"] = tel
        pat["gender"] = p["sex"]
        pat["birthDate"] = p["birth"].isoformat()
        pat["address"] = [self.render_address(p["address"])]
        code, disp = p["marital"]
        pat["maritalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                            "code": code, "display": disp}], "text": disp}
        if p.get("multiple"):
            pat["multipleBirthInteger"] = p["multiple"]
        else:
            pat["multipleBirthBoolean"] = False
        pat["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US",
                                                          "display": "English (United States)"}],
                                              "text": "English (United States)"}}]
        return pat

    # --- errors
    def typo(self, s):
        r = self.rng
        letters = [i for i, ch in enumerate(s) if ch.isalpha()]
        for _ in range(20):
            i = r.choice(letters)
            kind = r.choice(["ins", "del", "sub", "sub", "swap"])
            ch = s[i].lower()
            repl = r.choice(NEIGHBOURS[ch] or "aeiou")
            if s[i].isupper():
                repl = repl.upper()
            if kind == "ins":
                t = s[:i + 1] + repl.lower() + s[i + 1:]
            elif kind == "del" and len(letters) > 3:
                t = s[:i] + s[i + 1:]
            elif kind == "sub":
                t = s[:i] + repl + s[i + 1:]
            elif kind == "swap" and i + 1 < len(s) and s[i + 1].isalpha() and s[i] != s[i + 1]:
                a, b = s[i], s[i + 1]
                if i == 0:
                    a, b = a.lower(), b.upper()
                t = s[:i] + b + a + s[i + 2:]
            else:
                continue
            if t != s and len(t) >= 2:
                return t
        return s[:-1] if len(s) > 3 else s + "e"

    def nickname_candidates(self, given, sex):
        """Nicknames of a formal name, or (if the registered name is itself a
        nickname) the formal names of the same sex it is short for."""
        g = given.lower()
        cands = [c for c in self.nick_fwd.get(g, []) if c != g and len(c) > 1]
        if not cands:
            pool = {n.lower() for n in (MALE_NAMES if sex == "male" else FEMALE_NAMES)}
            pool |= {n.lower() for n in self.synthea_given[sex]}
            cands = [c for c in self.nick_rev.get(g, []) if c != g and c in pool]
        return cands

    def nickname_of(self, given, sex):
        cands = self.nickname_candidates(given, sex)
        if not cands:
            return None
        g = given.lower()
        # the everyday forms (Rob, Bobby for Robert) share the first letters; the
        # archaic ones (Hob, Dobbin) do not: weight them down
        w = [4 if c[:2] == g[:2] else 2 if c[-3:] == g[-3:] or c in ("bob", "bill", "peggy",
             "dick", "ted", "jack", "sally", "polly", "chuck", "betty", "liz", "beth") else 1
             for c in cands]
        return title(self.rng.choices(cands, w)[0])

    def applicable(self, err, p):
        b = p["birth"]
        if err == "nickname":
            return bool(self.nickname_candidates(p["given"], p["sex"]))
        if err == "transposed-dob":
            return b.day <= 12 and b.day != b.month
        if err == "married-surname":
            return p["sex"] == "female" and (TODAY - b).days // 365 >= 18
        if err == "no-middle":
            return bool(p["middle"])
        if err == "missing-phone" or err == "new-phone":
            return bool(p["phone"])
        if err == "missing-email":
            return bool(p["email"])
        if err == "hyphenated":
            return "-" in p["family"] or " " in p["family"]
        return True

    ERRS = [("typo-given", 10), ("typo-family", 10), ("nickname", 9), ("transposed-dob", 4),
            ("dob-digit", 6), ("moved", 12), ("new-phone", 9), ("married-surname", 9),
            ("no-middle", 7), ("case-punct", 8), ("hyphenated", 30), ("missing-phone", 5),
            ("missing-email", 4), ("address-format", 7)]
    EXCLUSIVE = [{"typo-given", "nickname"}, {"typo-family", "married-surname"},
                 {"transposed-dob", "dob-digit"}, {"married-surname", "hyphenated"},
                 {"new-phone", "missing-phone"}, {"moved", "address-format"}]

    @staticmethod
    def plausible(errs, dl_kept):
        """Could a careful registrar still match it?  Count the evidence left."""
        e = set(errs)
        score = 0.0
        if "missing-ssn" not in e:
            score += 3
        if dl_kept:
            score += 1
        if not e & {"transposed-dob", "dob-digit"}:
            score += 2
        else:
            score += 0.5  # a near-miss date is still some evidence
        score += 0.5 if "married-surname" in e else (1.5 if "typo-family" in e else 2)
        score += 0.7 if e & {"nickname", "typo-given"} else 1
        if "moved" not in e:
            score += 1
        if not e & {"new-phone", "missing-phone"}:
            score += 1
        # name changed and birth date wrong is too much without an SSN
        if "missing-ssn" in e and "married-surname" in e and e & {"transposed-dob", "dob-digit"}:
            return False
        if "married-surname" in e and "moved" in e and e & {"transposed-dob", "dob-digit"}:
            return False
        return score >= 5.0

    def make_duplicate(self, orig):
        r = self.rng
        candidates = [(e, w) for e, w in self.ERRS if self.applicable(e, orig)]
        for _ in range(50):
            n = r.choices([1, 2, 3], [45, 35, 20])[0]
            errs = []
            if r.random() < 0.35:
                errs.append("missing-ssn")
            pool = list(candidates)
            while len(errs) < n and pool:
                e = r.choices([x for x, _ in pool], [w for _, w in pool])[0]
                pool = [(x, w) for x, w in pool if x != e
                        and not any({x, e} <= ex for ex in self.EXCLUSIVE)]
                errs.append(e)
            dl_kept = bool(orig["dl"]) and r.random() >= 0.2
            if errs and self.plausible(errs, dl_kept):
                break
        else:  # no plausible combination drawn: one error only
            errs = [r.choice([x for x, _ in candidates])]
            dl_kept = bool(orig["dl"])
        d = dict(orig)
        d["address"] = dict(orig["address"])
        d["maiden"] = None
        d["multiple"] = None
        sysname, orgname, style = r.choice(ORGS)
        d["mrn_system"], d["org"], d["mrn"] = sysname, orgname, self.new_mrn(style)
        if orig["dl"] and not dl_kept:
            d["dl"] = None
        errs.sort(key=APPLY_ORDER.index)  # content changes first, case/accents last
        for e in errs:
            self.apply_error(e, d, orig)
        errors = list(errs)
        if orig["dl"] and not dl_kept:
            errors.append("missing-dl")
        return d, errors

    def apply_error(self, e, d, orig):
        r = self.rng
        if e == "missing-ssn":
            d["ssn"] = None
        elif e == "typo-given":
            d["given"] = self.typo(d["given"])
        elif e == "typo-family":
            d["family"] = self.typo(d["family"])
        elif e == "nickname":
            d["given"] = self.nickname_of(d["given"], d["sex"]) or d["given"]
        elif e == "transposed-dob":
            b = d["birth"]
            d["birth"] = datetime.date(b.year, b.day, b.month)
        elif e == "dob-digit":
            d["birth"] = self.dob_digit(d["birth"])
        elif e == "moved":
            d["address"] = self.new_address(exclude_city=orig["address"]["city"])
        elif e == "new-phone":
            d["phone"] = self.new_phone()
        elif e == "missing-phone":
            d["phone"] = None
        elif e == "missing-email":
            d["email"] = None
        elif e == "no-middle":
            d["middle"] = None
        elif e == "married-surname":
            old = d["family"]
            new = self.pick_family()
            while new == old:
                new = self.pick_family()
            x = r.random()
            if x < 0.6:
                d["family"] = new
            elif x < 0.8:
                d["family"] = "%s-%s" % (old, new)
            else:
                d["family"] = "%s %s" % (old, new)
            if r.random() < 0.3:
                d["maiden"] = old
            d["marital"] = ("M", "Married")
        elif e == "hyphenated":
            f = d["family"]
            if "-" in f:
                d["family"] = f.replace("-", " ") if r.random() < 0.6 else f.replace("-", "")
            else:
                d["family"] = f.replace(" ", "-")
        elif e == "case-punct":
            self.case_punct(d)
        elif e == "address-format":
            a = d["address"]
            choices = ["suffix", "zip4"] + (["unit"] if a["unit"] else [])
            c = r.choice(choices)
            if c == "suffix":
                a["long"] = not a["long"]
            elif c == "zip4":
                a["zip4"] = None if a["zip4"] else "%04d" % r.randrange(10000)
            else:
                kind, num = a["unit"]
                a["unit"] = (r.choice([k for k in ("Apt", "Unit", "#", "Ste") if k != kind]), num)

    def case_punct(self, d):
        r = self.rng
        opts = ["upper"]
        if d["given"].lower() in ACCENTED or d["family"].lower() in ACCENTED:
            opts += ["accent", "accent"]
        if "'" in d["family"]:
            opts += ["apos", "apos"]
        if d["family"].startswith("Mc") or d["family"].startswith("Mac"):
            opts += ["lower-mc"]
        opts.append("lower")
        o = r.choice(opts)
        if o == "upper":
            d["given"], d["family"] = d["given"].upper(), d["family"].upper()
            if d["middle"]:
                d["middle"] = d["middle"].upper()
        elif o == "lower":
            d["given"], d["family"] = d["given"].lower(), d["family"].lower()
        elif o == "accent":
            d["given"] = ACCENTED.get(d["given"].lower(), d["given"])
            d["family"] = ACCENTED.get(d["family"].lower(), d["family"])
        elif o == "apos":
            d["family"] = d["family"].replace("'", r.choice(["", " ", "\u2019"]))
        else:
            d["family"] = d["family"][0] + d["family"][1:].lower()

    def dob_digit(self, b):
        r = self.rng
        s = b.isoformat()
        positions = [i for i, ch in enumerate(s) if ch.isdigit() and i not in (0, 1)]
        for _ in range(100):
            i = r.choice(positions)
            t = s[:i] + str(r.randrange(10)) + s[i + 1:]
            if t == s:
                continue
            try:
                nb = datetime.date.fromisoformat(t)
            except ValueError:
                continue
            if datetime.date(1900, 1, 1) <= nb <= TODAY:
                return nb
        return b + datetime.timedelta(days=1)

    # --- twins and namesakes
    def make_twin(self, orig):
        r = self.rng
        sex = orig["sex"] if r.random() < 0.5 else ("male" if orig["sex"] == "female" else "female")
        banned = {orig["given"].lower()} | set(self.nick_fwd.get(orig["given"].lower(), [])) \
            | set(self.nick_rev.get(orig["given"].lower(), []))
        given = self.pick_given(sex)
        while given.lower() in banned:
            given = self.pick_given(sex)
        t = self.make_person(sex=sex, given=given, family=orig["family"], birth=orig["birth"])
        t["address"] = dict(orig["address"])
        t["phone"] = orig["phone"]
        if r.random() < 0.5:
            t["multiple"] = 2
        return t

    def make_namesake(self, orig):
        r = self.rng
        b = orig["birth"]
        while True:
            nb = datetime.date(b.year, 1, 1) + datetime.timedelta(days=r.randrange(365))
            if nb != b and nb.year == b.year:
                break
        n = self.make_person(sex=orig["sex"], given=orig["given"], family=orig["family"], birth=nb)
        if r.random() < 0.3:
            n["address"] = self.new_address(city=orig["address"]["city"])
        if n["address"]["number"] == orig["address"]["number"] and n["address"]["body"] == orig["address"]["body"]:
            n["address"] = self.new_address(exclude_city=orig["address"]["city"])
        return n


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Generate a labelled FHIR Patient population for patient-matching tests "
                    "(originals, duplicates with registration errors, twins, namesakes).")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--people", type=int, default=2000, help="original people (default 2000)")
    ap.add_argument("--duplicates", type=int, default=1000, help="duplicate records (default 1000)")
    ap.add_argument("--twins", type=int, default=150, help="twin records (default 150)")
    ap.add_argument("--namesakes", type=int, default=150, help="namesake records (default 150)")
    ap.add_argument("--out", default="-", help="output JSON file (default stdout)")
    ap.add_argument("--synthea", default=os.path.join(REPO, "testdata", "synthea"),
                    help="directory holding smart-2019/ and synthea-v3/")
    ap.add_argument("--nicknames", default=os.path.join(REPO, "crates", "matching", "data", "nicknames.csv"))
    ap.add_argument("--suffixes", default=os.path.join(REPO, "crates", "matching", "data", "street_suffixes.csv"))
    args = ap.parse_args(argv)
    if args.people < 1 or min(args.duplicates, args.twins, args.namesakes) < 0:
        ap.error("--people must be >= 1 and the other counts >= 0")

    t0 = time.time()
    g = Gen(args)
    rng = g.rng
    items = []  # (person index, role, errors, person dict)
    originals = []
    for _ in range(args.people):
        p = g.make_person()
        originals.append(p)
        items.append((len(originals) - 1, "original", [], p))
    n_people = len(originals)
    for _ in range(args.duplicates):
        i = rng.randrange(len(originals))
        d, errs = g.make_duplicate(originals[i])
        items.append((i, "duplicate", errs, d))
    for _ in range(args.twins):
        o = rng.choice(originals)
        items.append((n_people, "twin", [], g.make_twin(o)))
        n_people += 1
    for _ in range(args.namesakes):
        o = rng.choice(originals)
        items.append((n_people, "namesake", [], g.make_namesake(o)))
        n_people += 1

    rng.shuffle(items)
    person_ids = list(range(1, n_people + 1))
    rng.shuffle(person_ids)
    records = []
    for k, (pi, role, errs, p) in enumerate(items, 1):
        records.append({"key": "r%06d" % k, "person": "p%06d" % person_ids[pi], "role": role,
                        "errors": errs, "patient": g.to_fhir(p)})

    doc = {"seed": args.seed, "generator": "make_match_set.py", "records": records}
    if args.out == "-":
        json.dump(doc, sys.stdout, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")

    roles = collections.Counter(r["role"] for r in records)
    errs = collections.Counter(e for r in records for e in r["errors"])
    nerr = collections.Counter(len([e for e in r["errors"] if e != "missing-dl"])
                               for r in records if r["role"] == "duplicate")
    print("make_match_set: seed %d, %d records, %d people, %.1fs"
          % (args.seed, len(records), n_people, time.time() - t0), file=sys.stderr)
    print("  roles: " + ", ".join("%s=%d" % kv for kv in sorted(roles.items())), file=sys.stderr)
    if nerr:
        print("  errors per duplicate: " + ", ".join("%d:%d" % kv for kv in sorted(nerr.items())),
              file=sys.stderr)
    for e, c in errs.most_common():
        print("  %-16s %d" % (e, c), file=sys.stderr)


if __name__ == "__main__":
    main()
