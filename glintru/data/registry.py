"""The named public datasets: where each file is published, its format, the paper's preparation
recipe and the counts that recipe gives. `glintru datasets | download | prepare --dataset` read it.

Every fact here has a public source, named beside it. Checksums are recorded only where a published
list states them (otherwise None: a download then reports the sha256 it computed instead of
verifying it); expected counts only where the paper or the data's publisher states them.

Adding a dataset is one `DatasetSpec` in `DATASETS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glintru.data import sources

SPLIT = "chronological leave-one-out (last item test, second-to-last validation)"


@dataclass(frozen=True)
class RemoteFile:
    """One published file. `role` is "interactions" or "items" (side features, optional);
    `unzip` extracts the archive next to it after the download is verified."""

    url: str
    sha256: str | None = None
    size: int | None = None  # bytes, when published with the checksum
    role: str = "interactions"
    unzip: bool = False

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def url_from(self, base_url: str | None) -> str:
        """The address under another base (a mirror, a local server): base + "/" + file name."""
        return self.url if base_url is None else f"{base_url.rstrip('/')}/{self.filename}"


@dataclass(frozen=True)
class Recipe:
    """The preparation `glintru prepare` applies (the arguments of `glintru.data.prepare.prepare`)."""

    min_rating: float | None = None
    k_core: int | None = None
    duplicates: str = "first"

    def describe(self) -> str:
        rating = "all ratings" if self.min_rating is None else f"ratings >= {self.min_rating:g}"
        core = "no k-core" if self.k_core is None else f"{self.k_core}-core"
        return f"{rating}, {core}, duplicates {self.duplicates}"


@dataclass(frozen=True)
class Counts:
    """Users, items and interactions after the recipe, and where these numbers are published."""

    users: int
    items: int
    interactions: int
    source: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    format: str  # a reader in glintru.data.sources.FORMATS
    files: tuple[RemoteFile, ...]
    input: str  # the interaction file to prepare, relative to the download directory
    recipe: Recipe
    counts: Counts | None
    checksum_source: str | None = None
    items: str | None = None  # item side-feature file, relative to the download directory
    notes: str = ""

    def input_path(self, given: str | Path) -> Path:
        """`given` itself, or for a download directory the registered input file inside it."""
        p = Path(given)
        return p / self.input if p.is_dir() and (p / self.input).exists() else p

    def items_path(self, input_file: str | Path) -> Path | None:
        """The registered item file when it sits beside the input, as `download` leaves it."""
        if self.items is None:
            return None
        cand = Path(input_file).parent / Path(self.items).name
        return cand if cand.is_file() else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"]["split"] = SPLIT
        return d


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
# sha256 and sizes of the GroupLens zips as listed in tensorflow/datasets,
# tensorflow_datasets/url_checksums/movielens.txt (GroupLens itself publishes md5 files only).
_TFDS = "tensorflow/datasets url_checksums/movielens.txt"
_AMAZON_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
_AMAZON_2018 = "https://jmcauley.ucsd.edu/data/amazon_v2"
_AMAZON_2018_MIRROR = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
_ICLREC = (
    "2890e6c3ff6a22c6699fc19cb863b66786c1cde4"  # salesforce/ICLRec commit; Beauty.txt is unchanged since it was added
)
_TABLE1 = "GLINT-RU paper, Table 1"


def _amazon_2014(name: str, category: str, counts: Counts, notes: str) -> DatasetSpec:
    """A 2014 5-core review file and its product metadata (the paper's Beauty and Video Games)."""
    return DatasetSpec(
        name=name,
        title=f"Amazon {category.replace('_', ' ')} 2014, 5-core",
        format="amazon-json",
        files=(
            RemoteFile(f"{_AMAZON_2014}/reviews_{category}_5.json.gz"),
            RemoteFile(f"{_AMAZON_2014}/meta_{category}.json.gz", role="items"),
        ),
        input=f"reviews_{category}_5.json.gz",
        items=f"meta_{category}.json.gz",
        recipe=Recipe(k_core=5),
        counts=counts,
        notes=notes,
    )


def _amazon_2018(name: str, category: str, title: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        title=title,
        format="amazon-json",
        files=(
            RemoteFile(f"{_AMAZON_2018}/categoryFilesSmall/{category}_5.json.gz"),
            RemoteFile(f"{_AMAZON_2018}/metaFiles2/meta_{category}.json.gz", role="items"),
        ),
        input=f"{category}_5.json.gz",
        items=f"meta_{category}.json.gz",
        recipe=Recipe(k_core=5),
        counts=None,
        notes=(
            "Amazon Review Data (2018), Ni, Li and McAuley, EMNLP 2019; the 5-core review file. No counts "
            "after this recipe are published. Mirror of the review file: "
            f"--base-url {_AMAZON_2018_MIRROR}/categoryFilesSmall --no-items"
        ),
    )


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec(
            name="ml-100k",
            title="MovieLens 100K",
            format="movielens",
            files=(
                RemoteFile(
                    f"{_GROUPLENS}/ml-100k.zip",
                    unzip=True,
                    size=4924029,
                    sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                ),
            ),
            input="ml-100k/u.data",
            items="ml-100k/u.item",
            recipe=Recipe(),
            counts=Counts(943, 1682, 100000, "GroupLens ml-100k README"),
            checksum_source=_TFDS,
            notes="Every user has at least 20 ratings, so no filter removes anything.",
        ),
        DatasetSpec(
            name="ml-1m",
            title="MovieLens 1M",
            format="movielens",
            files=(
                RemoteFile(
                    f"{_GROUPLENS}/ml-1m.zip",
                    unzip=True,
                    size=5917549,
                    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                ),
            ),
            input="ml-1m/ratings.dat",
            items="ml-1m/movies.dat",
            recipe=Recipe(),
            counts=Counts(6040, 3706, 1000209, _TABLE1),
            checksum_source=_TFDS,
            notes="The paper keeps every rating (Table 1 equals the raw file).",
        ),
        DatasetSpec(
            name="ml-20m",
            title="MovieLens 20M",
            format="movielens",
            files=(
                RemoteFile(
                    f"{_GROUPLENS}/ml-20m.zip",
                    unzip=True,
                    size=198702078,
                    sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
                ),
            ),
            input="ml-20m/ratings.csv",
            items="ml-20m/movies.csv",
            recipe=Recipe(),
            counts=Counts(
                138493, 26744, 20000263, "GroupLens ml-20m README (ratings, users); LensKit codex ML20M (rated items)"
            ),
            checksum_source=_TFDS,
            notes="27,278 movies are listed, 26,744 of them rated.",
        ),
        _amazon_2014(
            "beauty",
            "Beauty",
            Counts(22363, 12101, 198502, _TABLE1),
            "Image-based recommendations on styles and substitutes (McAuley et al., SIGIR 2015), "
            "listed at jmcauley.ucsd.edu/data/amazon. The file is already 5-core; the paper's "
            "counts equal its reviews, users and items.",
        ),
        _amazon_2014(
            "video-games", "Video_Games", Counts(24303, 10672, 231780, _TABLE1), "Same release and recipe as beauty."
        ),
        _amazon_2018("all-beauty-2018", "All_Beauty", "Amazon All Beauty 2018, 5-core"),
        _amazon_2018("luxury-beauty-2018", "Luxury_Beauty", "Amazon Luxury Beauty 2018, 5-core"),
        _amazon_2018("video-games-2018", "Video_Games", "Amazon Video Games 2018, 5-core"),
        DatasetSpec(
            name="beauty-seq",
            title="Amazon Beauty 2014 5-core as preprocessed sequences (the salesforce/ICLRec copy)",
            format="seq-txt",
            files=(
                RemoteFile(
                    f"https://raw.githubusercontent.com/salesforce/ICLRec/{_ICLREC}/data/Beauty.txt",
                    size=1090094,
                    sha256="226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                ),
            ),
            input="Beauty.txt",
            recipe=Recipe(k_core=5),
            counts=Counts(22363, 12101, 198502, _TABLE1),
            checksum_source=f"salesforce/ICLRec data/Beauty.txt at commit {_ICLREC[:12]} (git blob a2977302)",
            notes=(
                "The beauty log as renumbered user/item sequences in time order, without timestamps or "
                "ratings; the copy most sequential-recommendation code trains on. Ties of equal "
                "timestamps were already decided when it was written."
            ),
        ),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)} (see `glintru datasets`)")
    return DATASETS[name]


_COUNT_KEYS = ("users", "items", "interactions")


def compare_counts(spec: DatasetSpec, stats: Mapping[str, Any]) -> tuple[bool | None, str]:
    """(match, message) for prepared `stats` (meta.json's users/items/interactions) against the
    registered counts. match is None when nothing is registered to compare with."""
    if spec.counts is None:
        return None, f"{spec.name}: no published counts registered; nothing to compare"
    expected = {k: getattr(spec.counts, k) for k in _COUNT_KEYS}
    got = {k: int(stats[k]) for k in _COUNT_KEYS}
    if got == expected:
        shown = ", ".join(f"{got[k]:,} {k}" for k in _COUNT_KEYS)
        return True, f"{spec.name}: counts match the registered counts ({spec.counts.source}): {shown}"
    diff = "; ".join(f"{k} {got[k]:,} (expected {expected[k]:,})" for k in _COUNT_KEYS if got[k] != expected[k])
    return False, f"{spec.name}: prepared counts differ from the registered counts ({spec.counts.source}): {diff}"


def format_table(specs: Mapping[str, DatasetSpec] | None = None) -> str:
    """What `glintru datasets` prints: one row per dataset, then each one's addresses."""
    specs = DATASETS if specs is None else specs
    header = ("name", "format", "recipe", "users", "items", "interactions", "checksum")
    rows = [header]
    for s in specs.values():
        c = s.counts
        rows.append(
            (
                s.name,
                s.format,
                s.recipe.describe(),
                f"{c.users:,}" if c else "-",
                f"{c.items:,}" if c else "-",
                f"{c.interactions:,}" if c else "-",
                "sha256" if all(f.sha256 for f in s.files) else ("partly" if any(f.sha256 for f in s.files) else "-"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    numeric = {3, 4, 5}
    lines = [
        "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]
    lines.append("")
    lines.append(f"Every recipe ends in a {SPLIT} split.")
    for s in specs.values():
        lines.append("")
        lines.append(f"{s.name}: {s.title}")
        for f in s.files:
            extra = " (zip; prepare " + s.input + ")" if f.unzip else ""
            role = "" if f.role == "interactions" else f" [{f.role}]"
            lines.append(f"  {f.url}{role}{extra}")
        if s.counts:
            lines.append(f"  counts: {s.counts.source}")
        if s.checksum_source:
            lines.append(f"  sha256: {s.checksum_source}")
        if s.notes:
            lines.append(f"  {s.notes}")
    return "\n".join(lines)


def check_registry() -> None:
    """Raise if an entry names an unknown reader or is inconsistent (run by the tests)."""
    for name, s in DATASETS.items():
        if name != s.name:
            raise ValueError(f"registry key {name!r} holds dataset {s.name!r}")
        if s.format not in sources.FORMATS:
            raise ValueError(f"{name}: unknown format {s.format!r}")
        if [f.role for f in s.files].count("interactions") != 1:
            raise ValueError(f"{name}: needs exactly one interactions file")
        for f in s.files:
            if f.sha256 is not None and (len(f.sha256) != 64 or set(f.sha256) - set("0123456789abcdef")):
                raise ValueError(f"{name}: {f.filename} sha256 is not 64 lower-case hex digits")
        main = next(f for f in s.files if f.role == "interactions")
        if not main.unzip and s.input != main.filename:
            raise ValueError(f"{name}: input {s.input!r} is not the downloaded file {main.filename!r}")
