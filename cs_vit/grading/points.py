# cs-vit: instructor-only (builds the autograder from the solution)
"""Points per task: the instructor's points.cfg, then the overrides given at build time."""
from __future__ import annotations

import configparser
from pathlib import Path

from cs_vit.grading.tasks import AutograderError

POINTS_FILE = Path(__file__).with_name("points.cfg")
TRAINING = "training"


def parse_points(text):
    """``"task1=10,task5=25"`` -> {"task1": 10.0, "task5": 25.0}; AutograderError if malformed."""
    points = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, value = item.partition("=")
        try:
            points[name.strip()] = float(value)
        except ValueError:
            raise AutograderError(f"--points takes name=number pairs such as task5=25, "
                                  f"got {item!r}") from None
    return points


def resolve_points(tasks, overrides=None, points_file=POINTS_FILE):
    """{task or "training": points}: the points file's values, then ``overrides``."""
    parser = configparser.ConfigParser()
    parser.read(points_file)
    points = {k: float(v) for k, v in parser["points"].items()} if "points" in parser else {}
    points.update(overrides or {})
    known = [*tasks, TRAINING]
    unknown = sorted(set(points) - set(known))
    missing = [name for name in known if name not in points]
    if unknown or missing:
        raise AutograderError(f"points must name exactly {known}: unknown {unknown}, missing "
                              f"{missing}; edit {points_file} or pass --points")
    negative = [name for name, value in points.items() if not value >= 0]
    if negative:
        raise AutograderError(f"points must be numbers >= 0, not for {negative}")
    return {name: points[name] for name in known}
