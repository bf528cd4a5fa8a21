"""The one spelling of an identifier a person types or a sender sends: a person's external
reference, a case number. Two references that look the same on screen must be the same
reference, or one missing person could be entered three times ("PH5-00001", "PH5-00001 " and
"PH5-00001" with a zero-width space) and a search would name one of them while the others' images
sit apart.

So surrounding whitespace goes, the text is brought to Unicode NFKC (full-width "ＰＨ５" is
"PH5", a non-breaking space is a space), and characters that cannot be seen or that reorder what
is seen (control, format and bidirectional characters, line and paragraph separators) are
refused, naming their code point, rather than silently dropped: a reference holding one was
typed or pasted wrongly, and the person entering it should see that.

Case is kept and matters: forensic references are identifiers issued by other systems (police
case numbers, DICOM PatientIDs), where "ab-1" and "AB-1" may be different records, and folding
case could merge two people. Rows stored before these rules are not rewritten."""

from __future__ import annotations

import unicodedata

# The lengths of the columns that keep them (app/storage/tables.py).
EXTERNAL_REF_LENGTH = 200
CASE_NUMBER_LENGTH = 100

# Cc control, Cf format (zero-width and bidirectional controls among them), Zl and Zp separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class InvalidIdentifier(ValueError):
    """The text cannot be an identifier; the message says which character or rule."""


def normalise_identifier(text: str, *, what: str, max_length: int) -> str:
    """`text` in its one spelling, or InvalidIdentifier saying why it cannot be one. `what` names
    the field in the message ("external_ref", "case number")."""
    normal = unicodedata.normalize("NFKC", text).strip()
    for character in normal:
        if unicodedata.category(character) in _INVISIBLE_CATEGORIES:
            name = unicodedata.name(character, "a control character")
            raise InvalidIdentifier(
                f"{what} contains U+{ord(character):04X} ({name}), an invisible or "
                "text-direction character; enter it without that character"
            )
    if not normal:
        raise InvalidIdentifier(f"{what} is empty once surrounding spaces are removed")
    if len(normal) > max_length:
        raise InvalidIdentifier(
            f"{what} is {len(normal)} characters in Unicode NFKC form; at most {max_length}"
        )
    return normal
