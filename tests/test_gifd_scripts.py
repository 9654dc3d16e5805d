"""The GIFD benchmark scripts' own logic (issue 16): what ``gifd_speed --settings digits`` keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedarena.benchmarks.reproductions.inversion.gifd_common import model_spec
from fedarena.benchmarks.reproductions.inversion.gifd_speed import kept_sections

RESULT = """# GIFD: cost of one iteration

- command: `python -m ...gifd_speed --threads 1`
- date: 2026-12-01 22:37

## digits: generator `mnist_gan`

| digits row |

## faces: generator `dcgan_faces64`

| faces row |
**faces verdict**
"""


def test_speed_keeps_the_sections_it_does_not_remeasure_with_their_date(tmp_path: Path) -> None:
    path = tmp_path / "gifd_speed.md"
    path.write_text(RESULT)
    kept = kept_sections(path, ["digits"])
    assert list(kept) == ["faces"]
    faces = kept["faces"]
    assert faces[0] == "## faces: generator `dcgan_faces64`"
    assert faces[2] == "(kept from the run of 2026-12-01 22:37, not re-measured by this command)"
    assert "| faces row |" in faces and "**faces verdict**" in faces and "| digits row |" not in faces
    # a file that already kept the section (newer date in its header) keeps the original date, one note
    path.write_text("# t\n\n- date: 2026-12-02 03:08\n\n## digits: new\n\n| new |\n\n" + "\n".join(faces) + "\n")
    again = kept_sections(path, ["digits"])["faces"]
    assert again == faces
    assert kept_sections(path, ["digits", "faces"]) == {}
    assert kept_sections(tmp_path / "absent.md", ["digits"]) == {}


def test_model_spec_parses_integer_options_and_names_a_bad_one() -> None:
    assert model_spec("resnet18") == ("resnet18", {})
    assert model_spec("convnet:width=16") == ("convnet", {"width": 16})
    with pytest.raises(ValueError, match="'width' in 'convnet:width' is not key=<integer>"):
        model_spec("convnet:width")
    with pytest.raises(ValueError, match="width=wide"):
        model_spec("convnet:width=wide")
