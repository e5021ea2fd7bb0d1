"""A synthetic company: departments, employees, competencies, the matrix and the answers.

Everything is derived from ``seed`` and ``size``, so two runs (and the app and its
reference inside one run) see exactly the same data. Shape, as issue 6 asks:

* a department tree four levels deep (company, divisions, departments, teams);
* each supplier has 3 to 15 internal customers, about 10 on average, mostly from the
  same division (people serve their neighbours), some from anywhere;
* 8 competencies; 85% of the customers respond; about 6% of the answers are
  "can't judge", about 20% of the ballots carry a comment.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

COMPETENCIES: list[tuple[str, str]] = [
    ("professionalism", "Professionalism"),
    ("responsiveness", "Responsiveness"),
    ("quality", "Quality of work"),
    ("communication", "Communication"),
    ("teamwork", "Teamwork"),
    ("reliability", "Reliability"),
    ("initiative", "Initiative"),
    ("ownership", "Ownership"),
]
COMPETENCY_WEIGHTS = [1.0, 1.0, 1.5, 1.0, 1.0, 1.5, 0.5, 1.0]

FIRST = [
    "Anna",
    "Boris",
    "Chen",
    "Dana",
    "Emil",
    "Fatima",
    "Georg",
    "Hana",
    "Ivan",
    "Julia",
    "Karl",
    "Lena",
    "Marco",
    "Nina",
    "Oleg",
    "Priya",
]
LAST = [
    "Ivanova",
    "Smith",
    "Novak",
    "Garcia",
    "Kim",
    "Petrov",
    "Müller",
    "Rossi",
    "Tanaka",
    "Silva",
    "Larsen",
    "Dubois",
]
COMMENTS = [
    "Always answers the same day.",
    "Could explain decisions more clearly.",
    "Great to work with; very thorough.",
    "Sometimes hard to reach during releases.",
    "Отличный коллега, всегда поможет.",
    "Takes ownership of problems end to end.",
]


@dataclass(frozen=True)
class Department:
    external_id: str
    name: str
    parent_external_id: str | None
    level: int


@dataclass(frozen=True)
class Employee:
    external_id: str
    email: str
    full_name: str
    department_external_id: str
    manager_external_id: str | None
    language: str


@dataclass(frozen=True)
class Answer:
    """One customer's ballot about one supplier: a score per competency (None = can't judge)."""

    scores: tuple[int | None, ...]
    nps: int | None
    comment: str | None


@dataclass
class Company:
    seed: int
    size: int
    departments: list[Department]
    employees: list[Employee]
    # (supplier external id, customer external id)
    pairs: list[tuple[str, str]]
    responders: frozenset[str]
    scale_min: int = 1
    scale_max: int = 10
    competencies: list[tuple[str, str]] = field(default_factory=lambda: list(COMPETENCIES))

    @cached_property
    def suppliers_of(self) -> dict[str, list[str]]:
        """Customer external id -> the suppliers they rate, in matrix order."""
        result: dict[str, list[str]] = {}
        for supplier, customer in self.pairs:
            result.setdefault(customer, []).append(supplier)
        return result

    @property
    def customers(self) -> list[str]:
        return list(self.suppliers_of)

    def answer(self, customer: str, supplier: str) -> Answer:
        """The answer ``customer`` gives about ``supplier`` (deterministic)."""
        rng = random.Random(f"{self.seed}:{customer}:{supplier}")
        # Each supplier has a "true" level; raters scatter around it.
        level = random.Random(f"{self.seed}:level:{supplier}").uniform(4.5, 9.0)
        scores: list[int | None] = []
        for _ in self.competencies:
            if rng.random() < 0.06:
                scores.append(None)
            else:
                value = round(rng.gauss(level, 1.5))
                scores.append(min(self.scale_max, max(self.scale_min, value)))
        nps = None if rng.random() < 0.1 else min(10, max(0, round(rng.gauss(level, 2.0))))
        comment = rng.choice(COMMENTS) if rng.random() < 0.2 else None
        return Answer(tuple(scores), nps, comment)

    @property
    def ballot_count(self) -> int:
        return sum(len(s) for c, s in self.suppliers_of.items() if c in self.responders)


def generate(size: int, seed: int = 42) -> Company:
    """Build a company of ``size`` employees."""
    rng = random.Random(seed)
    departments = _department_tree(size, rng)
    leaves_and_inner = departments[1:] or departments
    employees = _employees(size, leaves_and_inner, departments, rng)
    pairs = _matrix(employees, departments, rng)
    customers = sorted({c for _, c in pairs})
    responders = frozenset(c for c in customers if rng.random() < 0.85)
    return Company(seed, size, departments, employees, pairs, responders)


def _department_tree(size: int, rng: random.Random) -> list[Department]:
    # About 25 people per department; a fixed fan-out gives four levels at every size.
    wanted = max(4, size // 25)
    divisions = max(2, round(wanted ** (1 / 3)))
    per_division = max(1, round((wanted / divisions) ** 0.5))
    root = Department("D0", "Company", None, 0)
    result = [root]
    n = 0
    for d in range(divisions):
        n += 1
        division = Department(f"D{n}", f"Division {d + 1}", root.external_id, 1)
        result.append(division)
        for p in range(per_division):
            n += 1
            dept = Department(f"D{n}", f"Department {d + 1}.{p + 1}", division.external_id, 2)
            result.append(dept)
            for t in range(rng.randint(max(1, per_division - 2), per_division + 2)):
                n += 1
                result.append(
                    Department(f"D{n}", f"Team {d + 1}.{p + 1}.{t + 1}", dept.external_id, 3)
                )
    return result


def _employees(
    size: int, homes: list[Department], departments: list[Department], rng: random.Random
) -> list[Employee]:
    # Every department gets a head first (who reports to the parent's head), then the
    # rest are spread over the teams, so the tree is populated at every level.
    head_of: dict[str, str] = {}
    employees: list[Employee] = []
    by_id = {d.external_id: d for d in departments}

    def add(dept: Department, manager: str | None) -> str:
        i = len(employees) + 1
        ext = f"E{i:06d}"
        first, last = rng.choice(FIRST), rng.choice(LAST)
        employees.append(
            Employee(
                external_id=ext,
                email=f"{_ascii(first)}.{_ascii(last)}.{i}@bench.example.com",
                full_name=f"{first} {last} {i}",
                department_external_id=dept.external_id,
                manager_external_id=manager,
                language="ru" if rng.random() < 0.2 else "en",
            )
        )
        return ext

    for dept in departments:
        if len(employees) >= size:
            break
        parent = by_id.get(dept.parent_external_id or "")
        head_of[dept.external_id] = add(dept, head_of.get(parent.external_id) if parent else None)
    teams = [d for d in homes if d.level == 3] or homes
    while len(employees) < size:
        team = rng.choice(teams)
        add(team, head_of.get(team.external_id))
    return employees


def _ascii(name: str) -> str:
    # Addresses stay ASCII (no SMTPUTF8 on most relays); names keep their accents.
    folded = unicodedata.normalize("NFKD", name.replace("ü", "ue"))
    return folded.encode("ascii", "ignore").decode().lower()


def _matrix(
    employees: list[Employee], departments: list[Department], rng: random.Random
) -> list[tuple[str, str]]:
    by_id = {d.external_id: d for d in departments}

    def division_of(dept_id: str) -> str:
        dept = by_id[dept_id]
        while dept.level > 1 and dept.parent_external_id:
            dept = by_id[dept.parent_external_id]
        return dept.external_id

    by_division: dict[str, list[str]] = {}
    for e in employees:
        by_division.setdefault(division_of(e.department_external_id), []).append(e.external_id)
    everyone = [e.external_id for e in employees]
    pairs: list[tuple[str, str]] = []
    for e in employees:
        if len(everyone) < 4 or rng.random() < 0.1:
            continue  # about one person in ten serves nobody internally
        local = by_division[division_of(e.department_external_id)]
        # 3..15, mean about 10: a triangular distribution peaking near 12.
        wanted = min(len(everyone) - 1, round(rng.triangular(3, 15, 12)))
        chosen: set[str] = set()
        while len(chosen) < wanted:
            pool = local if rng.random() < 0.8 and len(local) > wanted else everyone
            customer = rng.choice(pool)
            if customer != e.external_id:
                chosen.add(customer)
        pairs.extend((e.external_id, c) for c in sorted(chosen))
    return pairs
