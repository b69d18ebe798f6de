"""Class names and their clinical grouping: the vocabulary every side agrees on.

SIPaKMeD's five classes fall into three clinical groups (dataset paper, Plissiti et
al. 2018): superficial-intermediate and parabasal cells are *normal*, metaplastic
cells are *benign*, koilocytotic and dyskeratotic cells are *abnormal*. The device
adds a fourth group, *unknown*, for crops it refuses to classify (not a cell, or too
far from every class the model knows).
"""

from __future__ import annotations

import re

SIPAKMED_CLASSES: tuple[str, ...] = (
    "superficial_intermediate",
    "parabasal",
    "metaplastic",
    "koilocytotic",
    "dyskeratotic",
)

# Folder names of the public download (``im_<Folder>``), per class.
SIPAKMED_FOLDERS: dict[str, str] = {
    "superficial_intermediate": "Superficial-Intermediate",
    "parabasal": "Parabasal",
    "metaplastic": "Metaplastic",
    "koilocytotic": "Koilocytotic",
    "dyskeratotic": "Dyskeratotic",
}

NORMAL, BENIGN, ABNORMAL, UNKNOWN = "normal", "benign", "abnormal", "unknown"
GROUPS: tuple[str, ...] = (NORMAL, BENIGN, ABNORMAL, UNKNOWN)

SIPAKMED_GROUPS: dict[str, str] = {
    "superficial_intermediate": NORMAL,
    "parabasal": NORMAL,
    "metaplastic": BENIGN,
    "koilocytotic": ABNORMAL,
    "dyskeratotic": ABNORMAL,
}

# Display colours (BGR, for OpenCV drawing) per clinical group.
GROUP_COLOURS_BGR: dict[str, tuple[int, int, int]] = {
    NORMAL: (80, 175, 76),     # green
    BENIGN: (0, 190, 255),     # amber
    ABNORMAL: (60, 40, 230),   # red
    UNKNOWN: (170, 170, 170),  # grey
}


def canonical_name(folder_name: str) -> str:
    """Map a folder name to a class name: ``im_Superficial-Intermediate`` -> ``superficial_intermediate``.

    >>> canonical_name("im_Dyskeratotic")
    'dyskeratotic'
    >>> canonical_name("Superficial-Intermediate")
    'superficial_intermediate'
    >>> canonical_name("My Class 2")
    'my_class_2'
    """
    name = folder_name
    if name.lower().startswith("im_"):
        name = name[3:]
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def group_of(class_name: str, groups: dict[str, str] | None = None) -> str:
    """The clinical group of a class; classes outside SIPaKMeD are ``unknown`` unless ``groups`` names them.

    >>> group_of("koilocytotic")
    'abnormal'
    >>> group_of("platelet")
    'unknown'
    """
    table = SIPAKMED_GROUPS if groups is None else groups
    return table.get(class_name, UNKNOWN)


def abnormal_indices(class_names: list[str] | tuple[str, ...], groups: dict[str, str] | None = None) -> list[int]:
    """Indices of the classes in the abnormal group (the screening's positives).

    >>> abnormal_indices(SIPAKMED_CLASSES)
    [3, 4]
    """
    return [k for k, c in enumerate(class_names) if group_of(c, groups) == ABNORMAL]


def default_groups(class_names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Clinical groups for a list of class names (SIPaKMeD's where known, else ``unknown``)."""
    return {c: group_of(c) for c in class_names}
