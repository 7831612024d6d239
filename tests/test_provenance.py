import subprocess

import glintru
from glintru.provenance import source_revision


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_a_checkout_gives_its_commit_and_whether_tracked_files_changed(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    info = source_revision(tmp_path)
    assert info == {"version": glintru.__version__, "commit": head.strip(), "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_revision(tmp_path)["dirty"] is True


def test_a_folder_outside_git_has_no_commit(tmp_path):
    assert source_revision(tmp_path) == {"version": glintru.__version__, "commit": None, "dirty": None}
