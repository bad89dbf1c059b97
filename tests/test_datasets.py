from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth import FER2013, FERPLUS, toy_faces, write_csv, write_folder

from multinet_emotion import MultiNetError
from multinet_emotion.emotions import EMOTIONS, DisgustPolicy, to_index
from multinet_emotion.training.datasets import DataConfig, ferplus_majority, load_dataset, relabel_ferplus


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path / "cache"))


def cfg(path, **kw):
    return DataConfig(path=path, **kw)


def test_labels_order_and_aliases():
    assert EMOTIONS == ("angry", "fear", "happy", "neutral", "sad", "surprise")
    assert to_index("Anger") == 0 and to_index("happiness") == 2 and to_index("surprised") == 5
    assert to_index("sadness") == 4 and to_index("neutral") == 3
    assert to_index("disgust") is None
    assert to_index("disgust", DisgustPolicy.MERGE) == 0
    with pytest.raises(MultiNetError, match="unknown emotion label 'contempt'"):
        to_index("contempt")


def test_folders_any_size_and_colour_become_grey(tmp_path):
    images, labels = toy_faces(4)
    write_folder(tmp_path / "d", images, labels, colour=True, scale=3)
    data = load_dataset(cfg(tmp_path / "d"))
    total = sum(len(s) for s in data.splits.values())
    assert total == len(labels)
    assert data.splits["train"].images.shape[1:] == (48, 48)
    assert data.splits["train"].images.dtype == np.uint8
    assert data.layout == "folders" and not data.skipped


def test_generic_folder_gets_stratified_seeded_validation(tmp_path):
    images, labels = toy_faces(20)
    write_folder(tmp_path / "d", images, labels)
    a = load_dataset(cfg(tmp_path / "d", val_fraction=0.25, seed=3, cache=False))
    b = load_dataset(cfg(tmp_path / "d", val_fraction=0.25, seed=3, cache=False))
    c = load_dataset(cfg(tmp_path / "d", val_fraction=0.25, seed=4, cache=False))
    assert a.splits["val"].class_counts() == {name: 5 for name in EMOTIONS}
    assert a.splits["train"].class_counts() == {name: 15 for name in EMOTIONS}
    assert a.splits["val"].sources == b.splits["val"].sources
    assert a.splits["val"].sources != c.splits["val"].sources
    assert any("stratified" in n for n in a.notes)


def test_fer2013_layout_split_by_file_prefix(tmp_path):
    images, labels = toy_faces(6)
    write_folder(tmp_path / "fer", images, labels, fer_prefixes=True)
    data = load_dataset(cfg(tmp_path / "fer", dedupe=False))
    assert data.layout == "fer2013-folders"
    assert all(s.split("/")[-1].startswith("Training_") for s in data.splits["train"].sources)
    assert all(s.split("/")[-1].startswith("PublicTest_") for s in data.splits["val"].sources)
    assert all(s.split("/")[-1].startswith("PrivateTest_") for s in data.splits["test"].sources)
    assert sum(len(s) for s in data.splits.values()) == len(labels)


def test_disgust_dropped_or_merged(tmp_path):
    images, labels = toy_faces(3)
    names = ("angry", "disgust", "happy", "neutral", "sad", "surprise")
    write_folder(tmp_path / "d", images, labels, names=names)
    dropped = load_dataset(cfg(tmp_path / "d", cache=False))
    assert sum(len(s) for s in dropped.splits.values()) == 15
    assert any("3 disgust" in n for n in dropped.notes)
    merged = load_dataset(cfg(tmp_path / "d", disgust=DisgustPolicy.MERGE, cache=False))
    counts = merged.split("all").class_counts()
    assert counts["angry"] == 6 and counts["fear"] == 0


def _bad_folder(root: Path) -> Path:
    images, labels = toy_faces(4)
    write_folder(root, images, labels)
    good = next((root / "happy").iterdir())
    data = good.read_bytes()
    (root / "happy" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "sad" / "not_an_image.png").write_text("hello")
    (root / "contempt").mkdir()
    Image.fromarray(images[0]).save(root / "contempt" / "x.png")
    (root / "fear" / "readme.txt").write_text("ignored: not an image suffix")
    return root


def test_bad_inputs_are_skipped_counted_and_listed(tmp_path):
    data = load_dataset(cfg(_bad_folder(tmp_path / "d")))
    reasons = {s.source: s.reason for s in data.skipped}
    assert "unreadable image" in reasons["happy/truncated.png".replace(".png", ".jpg")]
    assert "unreadable image" in reasons["sad/not_an_image.png"]
    assert "unknown label" in reasons["contempt/x.png"]
    assert len(data.skipped) == 3
    assert sum(len(s) for s in data.splits.values()) == 24
    assert data.report()["skipped_by_reason"] == {"unreadable image": 2, "unknown label": 1}


def test_strict_mode_fails_naming_the_file(tmp_path):
    root = _bad_folder(tmp_path / "d")
    with pytest.raises(MultiNetError, match=r"(truncated\.jpg|not_an_image\.png|contempt).*--strict"):
        load_dataset(cfg(root, strict=True))
    load_dataset(cfg(root))  # a lenient read caches the data with its skipped list ...
    with pytest.raises(MultiNetError, match=r"(truncated\.jpg|not_an_image\.png|contempt).*--strict"):
        load_dataset(cfg(root, strict=True))  # ... and --strict still fails on it


def test_empty_class_folder_is_reported(tmp_path):
    images, labels = toy_faces(3)
    keep = labels != 1
    write_folder(tmp_path / "d", images[keep], labels[keep])
    (tmp_path / "d" / "fear").mkdir()
    data = load_dataset(cfg(tmp_path / "d"))
    assert any(s.reason.startswith("empty class") for s in data.skipped)
    assert any("no training images for 'fear'" in n for n in data.notes)
    with pytest.raises(MultiNetError, match="fear.*empty class"):
        load_dataset(cfg(tmp_path / "d", strict=True, cache=False))


def test_missing_or_empty_paths_give_clear_errors(tmp_path):
    with pytest.raises(MultiNetError, match="no such file or folder"):
        load_dataset(cfg(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MultiNetError, match="no labelled images"):
        load_dataset(cfg(tmp_path / "empty"))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(MultiNetError, match="not a CSV"):
        load_dataset(cfg(tmp_path / "x.txt"))


def test_csv_reading_and_bad_rows(tmp_path):
    images, labels = toy_faces(2)
    fer_code = {0: 0, 1: 2, 2: 3, 3: 6, 4: 4, 5: 5}  # our index -> FER2013 code
    codes = [fer_code[int(y)] for y in labels]
    usages = ["Training", "PublicTest", "PrivateTest"] * 4
    path = write_csv(tmp_path / "fer.csv", images, codes, usages)
    text = path.read_text()
    text += "1," + " ".join(["0"] * 2304) + ",Training\n"  # disgust: dropped by policy
    text += "3,1 2 3,Training\n"  # wrong length
    text += "9," + " ".join(["0"] * 2304) + ",Training\n"  # unknown code
    text += "3," + " ".join(["x"] * 2304) + ",Training\n"  # not integers
    path.write_text(text)
    data = load_dataset(cfg(path, dedupe=False))
    assert data.layout == "fer2013-csv"
    assert sum(len(s) for s in data.splits.values()) == 12
    assert len(data.splits["train"]) == 4 and len(data.splits["test"]) == 4
    np.testing.assert_array_equal(np.sort(data.split("all").labels), np.sort(labels))
    reasons = sorted(s.reason.split(":")[0] for s in data.skipped)
    assert reasons == ["bad pixels", "bad pixels", "unknown label"]
    assert data.skipped[0].source == "fer.csv:15"
    with pytest.raises(MultiNetError, match=r"fer\.csv:15: bad pixels"):
        load_dataset(cfg(path, strict=True, cache=False))


def test_csv_without_required_columns(tmp_path):
    (tmp_path / "a.csv").write_text("label,image\n1,2\n")
    with pytest.raises(MultiNetError, match="'emotion' and 'pixels'"):
        load_dataset(cfg(tmp_path / "a.csv"))


def test_training_duplicates_of_test_images_are_dropped(tmp_path):
    images, labels = toy_faces(6)
    images[0] = images[2]  # index 0 is Training, index 2 is PrivateTest: identical pixels
    write_folder(tmp_path / "fer", images, labels, fer_prefixes=True)
    kept = load_dataset(cfg(tmp_path / "fer", dedupe=False, cache=False))
    deduped = load_dataset(cfg(tmp_path / "fer", cache=False))
    assert len(kept.splits["train"]) - len(deduped.splits["train"]) >= 1
    assert any("pixel-identical" in n for n in deduped.notes)


def test_cache_returns_the_same_data(tmp_path):
    images, labels = toy_faces(3)
    write_folder(tmp_path / "d", images, labels)
    a = load_dataset(cfg(tmp_path / "d"))
    b = load_dataset(cfg(tmp_path / "d"))
    for s in a.splits:
        np.testing.assert_array_equal(a.splits[s].images, b.splits[s].images)
        assert a.splits[s].sources == b.splits[s].sources


def test_ferplus_majority_rules():
    #                 neutral happy surprise sad anger disgust fear contempt unknown NF
    assert ferplus_majority(np.array([6, 4, 0, 0, 0, 0, 0, 0, 0, 0])) == EMOTIONS.index("neutral")
    assert ferplus_majority(np.array([5, 5, 0, 0, 0, 0, 0, 0, 0, 0])) is None  # tie
    assert ferplus_majority(np.array([0, 0, 0, 0, 0, 0, 0, 7, 3, 0])) is None  # contempt
    assert ferplus_majority(np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 10])) is None  # not a face
    assert ferplus_majority(np.array([0, 0, 0, 0, 8, 2, 0, 0, 0, 0])) == EMOTIONS.index("angry")


needs_fer = pytest.mark.skipif(not FER2013.is_dir(), reason="../shared/data/fer2013 absent")


@needs_fer
def test_real_fer2013_split_counts(monkeypatch):
    monkeypatch.delenv("MULTINET_CACHE")  # share the decoded copy with other runs
    data = load_dataset(cfg(FER2013, dedupe=False))
    # README: without disgust, train 28,273; test 7,067 = 3,533 PublicTest + 3,534 PrivateTest
    assert len(data.splits["train"]) == 28273
    assert len(data.splits["val"]) == 3533
    assert len(data.splits["test"]) == 3534
    assert data.splits["train"].class_counts() == {
        "angry": 3995, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830,
        "surprise": 3171}
    assert any("547 disgust" in n for n in data.notes)
    assert [s.source for s in data.skipped] == ["mosaic.png"]  # the README's picture
    deduped = load_dataset(cfg(FER2013))
    assert 0 < len(data.splits["train"]) - len(deduped.splits["train"]) < 1853
    assert len(deduped.splits["test"]) == 3534


@needs_fer
@pytest.mark.skipif(not FERPLUS.is_dir(), reason="../shared/data/ferplus absent")
def test_real_ferplus_relabelling(monkeypatch):
    monkeypatch.delenv("MULTINET_CACHE")
    data = load_dataset(cfg(FER2013))
    test, excluded = relabel_ferplus(data.split("test"), FERPLUS)
    assert len(test) + excluded == 3534
    assert 3000 < len(test) < 3534
    agree = (test.labels == data.split("test").subset(
        np.asarray([data.split("test").sources.index(s) for s in test.sources])).labels).mean()
    assert 0.5 < agree < 0.8  # README: ~63% of FER2013 labels agree with the FER+ majority
