"""Generate a benchmark fixture: a JSON platform seed and one move manifest per file.

  python -m benchmarks.generate OUT --customers N --users-per M --moves K --whale W [--resellers R]

writes
  OUT/platform.json          the seed (kind Platform, contract section 2), streamed: one customer a line
  OUT/moves/NNNNN-*.yaml     K moves, one manifest a file, each moving a distinct customer
  OUT/whale/00001-*.yaml     the move of the whale (one customer of W users); absent when W is 0
  OUT/fixture.json           what was generated: counts, and per move its file, customer and destination

The platform is shaped like a real one. Two locations (eu-west, us-east), R resellers in each
(eu-r01..). Every reseller offers hosted-exchange (3 SALs: basic, standard, premium) and sharepoint
(2 SALs: standard, business), each with two plans. Odd-numbered resellers (r01, r03, ...) sell the
common ids (`standard`, `exchange-basic`, ...); even-numbered ones sell their own branded ids
(`eu-r02-standard`, `eu-r02-exchange`, ...), so a move into, out of or between branded resellers
needs an explicit plan and explicit SAL mappings, and a move between two common-id resellers needs
none. SAL property values differ from reseller to reseller, so moved users' effective properties
change. Customers are spread round-robin over locations and resellers; every user holds both
services, on a mix of SALs, some with user-level overrides; some customers have customer-level
overrides (one a sensitive journalPassword). Every manifest is valid: it moves a customer to another
reseller of its own location and maps exactly the SALs in use, sometimes setting or removing a
customer-level property. The whale sits under eu-r01 and moves to eu-r02 by its own manifest.

Two shapes (--shape), so that a speed-up is not tuned to one fixture:
  default  50 users per customer (--users-per), mostly `standard` SALs, one user in ~8 with overrides.
  varied   customers of 10 to 100 users (--users-per is their mean), SALs spread evenly over every level,
           one user in 2 with overrides of their own (a third of those a sensitive journalPassword), and
           users holding only one of the two services.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

LOCATIONS = [("eu-west", "EU West (Amsterdam)"), ("us-east", "US East (Virginia)")]
EXCHANGE_LEVELS = ("basic", "standard", "premium")
SHAREPOINT_LEVELS = ("standard", "business")
WHALE_ID = "whale-corp"

SERVICES: list[dict[str, Any]] = [
    {"id": "hosted-exchange", "name": "Hosted Exchange", "properties": {
        "mailboxQuotaMB": {"type": "integer"},
        "activeSync": {"type": "boolean"},
        "archive": {"type": "boolean"},
        "journalPassword": {"type": "string", "sensitive": True},
    }},
    {"id": "sharepoint", "name": "SharePoint", "properties": {
        "storageMB": {"type": "integer"},
        "externalSharing": {"type": "boolean"},
    }},
]


@dataclass(frozen=True)
class Reseller:
    id: str
    location: str
    index: int  # 0-based within its location

    @property
    def branded(self) -> bool:
        """Even-numbered resellers (r02, r04, ...) sell their own plan and SAL ids."""
        return self.index % 2 == 1

    def sal(self, service: str, level: str) -> str:
        if not self.branded:
            return level
        return f"{self.id}-{level}" if service == "hosted-exchange" else f"{self.id}-sp-{level}"

    def plan(self, service: str, tier: str) -> str:
        """tier: "basic" or "pro"."""
        if service == "hosted-exchange":
            common = "exchange-basic" if tier == "basic" else "exchange-pro"
        else:
            common = "sp-basic" if tier == "basic" else "sp-business"
        return f"{self.id}-{common}" if self.branded else common

    def offering(self) -> dict[str, Any]:
        n = self.index
        exchange_props = {
            "basic": {"mailboxQuotaMB": 1024 * (1 + n % 2), "activeSync": False, "archive": False},
            "standard": {"mailboxQuotaMB": 2048 * (1 + n % 3), "activeSync": True, "archive": False},
            "premium": {"mailboxQuotaMB": 10240 + 2048 * n, "activeSync": True, "archive": True},
        }
        sharepoint_props = {
            "standard": {"storageMB": 1024 * (1 + n % 4), "externalSharing": False},
            "business": {"storageMB": 10240 * (1 + n % 2), "externalSharing": n % 2 == 0},
        }
        sharepoint: dict[str, Any] = {
            "plans": [self.plan("sharepoint", "basic"), self.plan("sharepoint", "pro")],
            "sals": {self.sal("sharepoint", lv): sharepoint_props[lv] for lv in SHAREPOINT_LEVELS},
        }
        if self.branded:
            sharepoint["maxUsers"] = 10_000_000  # a cap that exists (capacity is checked) but never binds
        return {
            "hosted-exchange": {
                "plans": [self.plan("hosted-exchange", "basic"), self.plan("hosted-exchange", "pro")],
                "sals": {self.sal("hosted-exchange", lv): exchange_props[lv] for lv in EXCHANGE_LEVELS},
            },
            "sharepoint": sharepoint,
        }


@dataclass(frozen=True)
class Params:
    customers: int = 4000
    users_per: int = 50
    moves: int = 1000
    whale: int = 50_000
    resellers: int = 8  # per location
    shape: str = "default"  # or "varied" (SHAPES)

    def check(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"--shape must be one of {', '.join(SHAPES)}")
        if self.customers < 1 or self.users_per < 1 or self.whale < 0 or self.moves < 0:
            raise ValueError("--customers and --users-per must be >= 1, --moves and --whale >= 0")
        if self.moves > self.customers:
            raise ValueError(f"--moves ({self.moves}) cannot exceed --customers ({self.customers}): "
                             "each move moves a distinct customer")
        if self.resellers < 2:
            raise ValueError("--resellers must be >= 2 (a move needs another reseller in the same location)")


def resellers(p: Params) -> list[list[Reseller]]:
    """Per location, its resellers."""
    return [[Reseller(f"{loc[:2]}-r{n + 1:02d}", loc, n) for n in range(p.resellers)] for loc, _ in LOCATIONS]


def _width(n: int, least: int) -> int:
    return max(least, len(str(max(n - 1, 0))))


def customer_id(p: Params, i: int) -> str:
    return f"c{i:0{_width(p.customers, 6)}d}"


def home_of(p: Params, i: int) -> Reseller:
    """Customers are spread round-robin over the locations, then over the location's resellers."""
    return resellers(p)[i % len(LOCATIONS)][(i // len(LOCATIONS)) % p.resellers]


SHAPES = ("default", "varied")
VARIED_SIZES = (0.2, 0.4, 1.0, 2.0, 0.6, 1.8)  # customer i of the varied shape: users_per x VARIED_SIZES[i % 6]


def users_of(p: Params, i: int) -> int:
    """Users of the i-th customer."""
    return p.users_per if p.shape == "default" else max(1, round(p.users_per * VARIED_SIZES[i % len(VARIED_SIZES)]))


def _user_levels(k: int, shape: str = "default") -> tuple[str, str]:
    """(hosted-exchange level, sharepoint level) of the k-th user of a customer."""
    if shape == "varied":
        return EXCHANGE_LEVELS[(k + k // 3) % 3], SHAREPOINT_LEVELS[(k // 2) % 2]
    ex = "premium" if k % 7 == 3 else "basic" if k % 13 == 5 else "standard"
    sp = "business" if k % 4 == 1 else "standard"
    return ex, sp


def _user_overrides(k: int, shape: str = "default") -> tuple[dict[str, Any], dict[str, Any]]:
    ex: dict[str, Any] = {}
    sp: dict[str, Any] = {}
    if shape == "varied":
        if k % 2 == 1:
            ex["mailboxQuotaMB"] = 1024 * (1 + k % 16)
            if k % 3 == 0:
                ex["journalPassword"] = f"user-secret-{k % 40}"  # made up: sensitive values at the user level
        if k % 5 == 2:
            sp["storageMB"] = 2048 * (1 + k % 7)
        return ex, sp
    if k % 11 == 4:
        ex["mailboxQuotaMB"] = 8192
    if k % 17 == 6:
        ex["activeSync"] = False
    if k % 19 == 2:
        sp["storageMB"] = 4096
    return ex, sp


def levels_in_use(n_users: int, shape: str = "default") -> tuple[set[str], set[str]]:
    """SAL levels in use by a customer of n users (the default, `standard`, included)."""
    ex, sp = {"standard"}, {"standard"}
    for k in range(min(n_users, 7 * 13 * 4)):  # the patterns repeat within lcm(7, 13, 4) users
        a, b = _user_levels(k, shape)
        ex.add(a)
        sp.add(b)
    return ex, sp


def _customer_overrides(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    ex: dict[str, Any] = {}
    sp: dict[str, Any] = {}
    if i % 10 == 0:
        ex["archive"] = True
    if i % 25 == 0:
        ex["journalPassword"] = f"bench-secret-{i}"  # a made-up value: exercises sensitive handling
    if i % 15 == 0:
        sp["externalSharing"] = True
    return ex, sp


def _customer(cid: str, name: str, home: Reseller, n_users: int, ex_tier: str, sp_tier: str,
              overrides: tuple[dict[str, Any], dict[str, Any]], shape: str = "default") -> dict[str, Any]:
    width = _width(n_users, 3)
    users = []
    for k in range(n_users):
        ex, sp = _user_levels(k, shape)
        ex_ov, sp_ov = _user_overrides(k, shape)
        services = {"hosted-exchange": {"sal": home.sal("hosted-exchange", ex), "overrides": ex_ov},
                    "sharepoint": {"sal": home.sal("sharepoint", sp), "overrides": sp_ov}}
        if shape == "varied" and k % 9 == 8:  # a mailbox without SharePoint
            del services["sharepoint"]
        users.append({"id": f"u{k:0{width}d}@{cid}.example", "services": services})
    return {
        "id": cid, "name": name, "location": home.location, "parent": home.id,
        "services": {
            "hosted-exchange": {"plan": home.plan("hosted-exchange", ex_tier),
                                "sal": home.sal("hosted-exchange", "standard"), "overrides": overrides[0]},
            "sharepoint": {"plan": home.plan("sharepoint", sp_tier),
                           "sal": home.sal("sharepoint", "standard"), "overrides": overrides[1]},
        },
        "users": users,
    }


def customers(p: Params) -> Iterator[dict[str, Any]]:
    """Every non-reseller customer, the whale last."""
    for i in range(p.customers):
        yield _customer(customer_id(p, i), f"Customer {i}", home_of(p, i), users_of(p, i),
                        "pro" if i % 3 == 0 else "basic", "pro" if i % 5 == 0 else "basic", _customer_overrides(i),
                        p.shape)
    if p.whale:
        yield _customer(WHALE_ID, "Whale Corporation", whale_home(p), p.whale, "pro", "pro",
                        ({"archive": True}, {"externalSharing": True}), p.shape)


def whale_home(p: Params) -> Reseller:
    return resellers(p)[0][0]


def whale_destination(p: Params) -> Reseller:
    return resellers(p)[0][1]


def write_platform(p: Params, fh: TextIO) -> int:
    """Stream the seed: memory stays flat however many users. Returns the number of users written."""
    head = {"apiVersion": "reconciler/v1", "kind": "Platform",
            "locations": [{"id": i, "name": n} for i, n in LOCATIONS], "services": SERVICES}
    text = json.dumps(head, indent=1)
    fh.write(text[:-2] + ',\n "customers": [\n')  # reopen the object to stream the customers into it
    first = True
    for group in resellers(p):
        for r in group:
            fh.write(("" if first else ",\n") + json.dumps(
                {"id": r.id, "name": f"Reseller {r.id}", "location": r.location, "parent": None,
                 "reseller": {"services": r.offering()}}, separators=(",", ":")))
            first = False
    n_users = 0
    for c in customers(p):
        fh.write(",\n" + json.dumps(c, separators=(",", ":")))
        n_users += len(c["users"])
    fh.write('\n ],\n "requests": []\n}\n')
    return n_users


@dataclass(frozen=True)
class MoveSpec:
    name: str
    customer: str
    source: Reseller
    dest: Reseller
    ex_tier: str
    sp_tier: str
    n_users: int
    properties: dict[str, Any]
    ticket: str
    description: str
    shape: str = "default"


def stride(p: Params) -> int:
    """About customers/moves, coprime with customers: k -> k*stride mod customers visits distinct customers
    of both locations and every reseller."""
    step = max(1, p.customers // max(p.moves, 1))
    while math.gcd(step, p.customers) != 1:
        step += 1
    return step


def batch(p: Params) -> Iterator[MoveSpec]:
    """K moves of distinct customers, spread over all customers, to another reseller of their location."""
    step = stride(p)
    for k in range(p.moves):
        i = (k * step) % p.customers
        src = home_of(p, i)
        dest = resellers(p)[i % len(LOCATIONS)][(src.index + 1 + k % (p.resellers - 1)) % p.resellers]
        cid = customer_id(p, i)
        props: dict[str, Any] = {}
        if k % 5 == 0:
            props["mailboxQuotaMB"] = 16384
        if k % 9 == 0 and "archive" in _customer_overrides(i)[0]:
            props["archive"] = None  # removes the customer's override
        yield MoveSpec(f"{cid}-to-{dest.id}", cid, src, dest, "pro" if i % 3 == 0 else "basic",
                       "pro" if i % 5 == 0 else "basic", users_of(p, i), props, f"CHG-{k + 1:05d}",
                       f"Customer {i} moves from {src.id} to {dest.id} (benchmark batch)", p.shape)


def whale_move(p: Params) -> MoveSpec:
    src, dest = whale_home(p), whale_destination(p)
    return MoveSpec(f"{WHALE_ID}-to-{dest.id}", WHALE_ID, src, dest, "pro", "pro", p.whale,
                    {"mailboxQuotaMB": 20480}, "CHG-WHALE", f"Whale Corporation moves from {src.id} to {dest.id}",
                    p.shape)


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def manifest(m: MoveSpec) -> str:
    """The manifest text: explicit plan and SAL mappings exactly where the ids differ."""
    lines = [
        "apiVersion: reconciler/v1", "kind: CustomerMove", "metadata:", f"  name: {m.name}",
        f"  ticket: {m.ticket}", f"  description: {m.description}", "spec:", f"  customer: {m.customer}",
        f"  toReseller: {m.dest.id}", f"  location: {m.dest.location}",
    ]
    ex_in_use, sp_in_use = levels_in_use(m.n_users, m.shape)
    services: list[str] = []
    for svc, tier, levels, all_levels in (("hosted-exchange", m.ex_tier, ex_in_use, EXCHANGE_LEVELS),
                                          ("sharepoint", m.sp_tier, sp_in_use, SHAREPOINT_LEVELS)):
        body: list[str] = []
        plan_from, plan_to = m.source.plan(svc, tier), m.dest.plan(svc, tier)
        if plan_from != plan_to:
            body.append(f"      plan: {plan_to}")
        mapped = [(m.source.sal(svc, lv), m.dest.sal(svc, lv)) for lv in all_levels if lv in levels]
        mapped = [(a, b) for a, b in mapped if a != b]
        if mapped:
            body.append("      sals:")
            body.extend(f"        {a}: {b}" for a, b in mapped)
        if svc == "hosted-exchange" and m.properties:
            body.append("      properties:")
            body.extend(f"        {k}: {_scalar(v)}" for k, v in m.properties.items())
        if body:
            services.extend([f"    {svc}:", *body])
    if services:
        lines.extend(["  services:", *services])
    return "\n".join(lines) + "\n"


def generate(out: Path, p: Params) -> dict[str, Any]:
    """Write the fixture into `out` (created; it must not hold one already) and return its description."""
    p.check()
    out.mkdir(parents=True, exist_ok=True)
    if (out / "platform.json").exists() or (out / "moves").exists():
        raise FileExistsError(f"{out} already holds a fixture; give an empty or new directory")
    with open(out / "platform.json", "w", encoding="utf-8") as fh:
        n_users = write_platform(p, fh)
    (out / "moves").mkdir()
    width = _width(p.moves + 1, 5)
    moves = []
    for k, m in enumerate(batch(p)):
        rel = f"moves/{k + 1:0{width}d}-{m.name}.yaml"
        (out / rel).write_text(manifest(m), encoding="utf-8")
        moves.append({"file": rel, "name": m.name, "customer": m.customer, "to": m.dest.id, "users": m.n_users})
    whale = None
    if p.whale:
        (out / "whale").mkdir()
        m = whale_move(p)
        rel = f"whale/00001-{m.name}.yaml"
        (out / rel).write_text(manifest(m), encoding="utf-8")
        whale = {"file": rel, "name": m.name, "customer": m.customer, "to": m.dest.id, "users": m.n_users}
    desc = {"params": {"customers": p.customers, "users_per": p.users_per, "moves": p.moves, "whale": p.whale,
                       "resellers": p.resellers, "shape": p.shape},
            "users": n_users, "customers": p.customers + (1 if p.whale else 0) + len(LOCATIONS) * p.resellers,
            "moves": moves, "whale": whale}
    (out / "fixture.json").write_text(json.dumps(desc, indent=1) + "\n", encoding="utf-8")
    return desc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.split("\n")[0])
    ap.add_argument("out", metavar="OUT", type=Path, help="directory to write (new or empty)")
    ap.add_argument("--customers", type=int, default=Params.customers, help="non-reseller customers (default 4000)")
    ap.add_argument("--users-per", type=int, default=Params.users_per, help="users per customer (default 50)")
    ap.add_argument("--moves", type=int, default=Params.moves, help="moves in the batch (default 1000)")
    ap.add_argument("--whale", type=int, default=Params.whale, help="users of the whale customer, 0 for none "
                                                                      "(default 50000)")
    ap.add_argument("--resellers", type=int, default=Params.resellers, help="resellers per location (default 8)")
    ap.add_argument("--shape", choices=SHAPES, default=Params.shape,
                    help="default: 50 users each, mostly one SAL; varied: 10-100 users, every SAL, many overrides")
    a = ap.parse_args(argv)
    p = Params(a.customers, a.users_per, a.moves, a.whale, a.resellers, a.shape)
    try:
        desc = generate(a.out, p)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: {desc['customers']} customers, {desc['users']} users, {len(desc['moves'])} moves"
          + (f", whale of {p.whale} users" if p.whale else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
