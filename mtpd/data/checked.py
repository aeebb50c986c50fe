"""The manifest an entry point reads: one `mtpd data check` wrote, or the given one, checked now.

Why: the DAG checks every dataset once (rule `check_dataset`) and hands its jobs the checked
manifest, but a user re-running one stage by hand, or a script, may give `mtpd train` (or
`evaluate`, `pretrain`, `stream`, `export`) the raw manifest: a NaN box or duplicate image ids
would then train for an epoch without a word, and an annotation id 0 would lower AP. So every
entry point loads its manifest here. One that `mtpd data check` wrote with the current checks
(it records their version) is used as it is, at no cost. Any other is checked the same way,
into `.<manifest name>.checked/` beside it, where the check's cache (keyed by each annotation
file's content) makes the next run cost one hash per file; its fixes are logged.
"""
from __future__ import annotations

import logging
from pathlib import Path

from mtpd.data.manifest import DatasetManifest
from mtpd.errors import DatasetError

log = logging.getLogger("mtpd.data")


def checked_dir(path: str | Path) -> Path:
    """Where the check of an unchecked manifest goes: beside it, hidden."""
    path = Path(path)
    return path.parent / f".{path.name}.checked"


def load_checked(path: str | Path) -> DatasetManifest:
    """The manifest at `path` if `mtpd data check` wrote it with the current checks, else the
    manifest of its check; DatasetError (one line per problem) if the check fails."""
    from mtpd.data.validate import VERSION, DatasetProblems, validate_dataset

    manifest = DatasetManifest.load(path)
    if manifest.checks == VERSION:
        return manifest
    out = checked_dir(path) / "checked.json"
    how = (f"fix them, or run `mtpd data check --dataset {path} --out CHECKED.json` "
           "(--drop-bad-boxes drops bad boxes) and give CHECKED.json as --dataset")
    try:
        report = validate_dataset(path, out)
    except DatasetProblems as e:
        count = f"{len(e.problems)} problem{'s' if len(e.problems) > 1 else ''}"
        raise DatasetError(f"dataset manifest {path} was not checked (`mtpd data check` writes "
                           f"checked manifests) and checking it found {count}\n"
                           + "\n".join(e.problems) + f"\n{how}") from None
    except OSError as e:
        raise DatasetError(f"dataset manifest {path} was not checked (`mtpd data check` writes "
                           f"checked manifests) and its check cannot be written to {out.parent} "
                           f"({e.strerror}); run `mtpd data check --dataset {path} --out "
                           "<a writable directory>/checked.json` and give that manifest as "
                           "--dataset") from None
    log.info("dataset manifest %s was not checked by `mtpd data check`: checked it into %s",
             path, out)
    for split in report["splits"].values():
        for fix in split["fixes"]:
            log.warning("fixed in the checked copy: %s", fix)
    return DatasetManifest.load(out)
