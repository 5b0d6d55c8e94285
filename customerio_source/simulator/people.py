"""People: derived from their index on demand (no per-person dicts kept, except small overlays)."""

from __future__ import annotations

import re

from ._util import DAY, mix

FIRST = ["Ada", "Bo", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jules", "Kofi", "Lena", "Mateo",
         "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Vera", "Wen", "Yusuf", "Zoe"]
LAST = ["Novak", "Okafor", "Silva", "Tanaka", "Müller", "Kowalski", "Haddad", "Reyes", "Larsen", "Dubois",
        "Ivanova", "Park", "Costa", "Nguyen", "Smith", "Brown", "Rossi", "Khan", "Jensen", "García"]
DOMAINS = ["example.com", "mail.example.org", "acme.test", "example.net"]
PLANS = ["free", "free", "starter", "pro", "pro", "team", "enterprise"]
COUNTRIES = [("US", "Austin", "America/Chicago"), ("DE", "Berlin", "Europe/Berlin"), ("BR", "São Paulo",
             "America/Sao_Paulo"), ("JP", "Osaka", "Asia/Tokyo"), ("GB", "London", "Europe/London"),
             ("IN", "Pune", "Asia/Kolkata"), ("FR", "Lyon", "Europe/Paris")]
SOURCES = ["organic", "ads", "referral", "partner", "import"]
TITLES = ["Engineer", "Designer", "Founder", "Marketer", "Analyst", "PM", "Student"]
COLORS = ["red", "teal", "amber", "violet", "green"]
_ASCII = str.maketrans("üäöçãé", "uaocae")


def _ascii(s: str) -> str:
    return s.translate(_ASCII).lower()


class PersonFactory:
    """Derives the base (build-time) view of person ``i``."""

    def __init__(self, seed: int, psalt: int, cio_prefix: int, created_at_of) -> None:
        self.seed = seed
        self.psalt = psalt
        self.cio_prefix = cio_prefix
        self.created_at_of = created_at_of

    def h(self, i: int) -> int:
        return mix(self.psalt ^ i)

    def cio_id(self, i: int) -> str:
        return f"{self.cio_prefix:04x}{i + 1:08x}"

    def names(self, i: int) -> tuple[str, str]:
        h = self.h(i)
        return FIRST[h % len(FIRST)], LAST[(h >> 8) % len(LAST)]

    def ident(self, i: int) -> str | None:
        """The person's ``id``: mostly ``user_<n>``; some with ``@``/``+``/``/``; some null."""
        h = self.h(i)
        r = (h >> 16) % 100
        if r < 7:
            return None
        first, last = self.names(i)
        if r < 12:
            return f"{_ascii(first)}+{i}@{DOMAINS[(h >> 24) % len(DOMAINS)]}"
        if r < 16:
            return f"team/{i}/{_ascii(last)}"
        return f"user_{i + 1000}"

    def email(self, i: int) -> str | None:
        h = self.h(i)
        if (h >> 32) % 100 < 5:
            return None
        first, last = self.names(i)
        return f"{_ascii(first)}.{_ascii(last)}.{i}@{DOMAINS[(h >> 24) % len(DOMAINS)]}"

    def phone(self, i: int) -> str:
        return f"+1555{i:07d}"

    def attributes(self, i: int) -> dict[str, str]:
        """~20 attributes, all string values as the API returns them."""
        h = self.h(i)
        h2 = mix(h)
        first, last = self.names(i)
        country, city, tz = COUNTRIES[(h2 >> 4) % len(COUNTRIES)]
        created = self.created_at_of(i)
        attrs = {"cio_id": self.cio_id(i), "first_name": first, "last_name": last,
                 "plan": PLANS[(h2 >> 8) % len(PLANS)], "created_at": str(created),
                 "company": f"{last} {['GmbH', 'Inc', 'Ltd', 'LLC'][(h2 >> 12) % 4]}", "country": country,
                 "city": city, "timezone": tz, "language": ["en", "de", "pt", "ja", "fr"][(h2 >> 16) % 5],
                 "signup_source": SOURCES[(h2 >> 20) % len(SOURCES)],
                 "lifetime_value": f"{(h2 >> 24) % 50_000 / 100:.2f}", "orders_count": str((h2 >> 40) % 40),
                 "last_login": str(created + (h2 >> 28) % (90 * DAY)), "is_beta": "true" if h2 % 7 == 0 else "false",
                 "phone": self.phone(i), "job_title": TITLES[(h2 >> 44) % len(TITLES)],
                 "favorite_color": COLORS[(h2 >> 48) % len(COLORS)], "email_verified": "true" if h2 % 3 else "false",
                 "score": str((h2 >> 52) % 100)}
        ident = self.ident(i)
        email = self.email(i)
        if ident is not None:
            attrs["id"] = ident
        if email is not None:
            attrs["email"] = email
        return attrs

    def devices(self, i: int) -> list[dict]:
        h = mix(self.h(i) ^ 0xD5)
        out = []
        for k in range(h % 3 if h % 5 < 3 else 0):
            hk = mix(h + k)
            platform = "ios" if hk % 2 else "android"
            out.append({"id": f"{hk:016x}{mix(hk):016x}", "platform": platform,
                        "last_used": self.created_at_of(i) + hk % (200 * DAY),
                        "attributes": {"device_os": "17.4" if platform == "ios" else "14",
                                       "device_model": "iPhone15,2" if platform == "ios" else "Pixel 8",
                                       "app_version": f"3.{hk % 9}.{hk % 5}", "cio_sdk_version": "3.1.0",
                                       "_last_status": "sent", "device_locale": "en-US",
                                       "push_enabled": "true" if hk % 4 else "false"}})
        return out

    def unsubscribed(self, i: int) -> bool:
        return (self.h(i) >> 56) % 20 == 0


_DIGITS = re.compile(r"\d+")


def candidate_indices(value: str) -> list[int]:
    """Indices a person id/email/phone could encode (every format embeds the index)."""
    out = []
    if value.startswith("+1555"):
        out.append(int(value[5:]) if value[5:].isdigit() else -1)
    for m in _DIGITS.findall(value):
        n = int(m)
        out.extend((n, n - 1000))
    return [n for n in out if n >= 0]
