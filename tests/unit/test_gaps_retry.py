"""Retrying a failed write: which folder is watched, what a vanished or unreachable mount
means, and how much room a file waits for."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from rotwatchd.service.retry import failed_folder, output_ready, room_needed


def test_the_folder_watched_is_the_one_the_failed_write_went_to(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "2024").mkdir(parents=True)
    default = tmp_path / "default"
    no_space_in_file = OSError(errno.ENOSPC, "No space left", str(out / "2024" / "a.jpg"))
    assert failed_folder(no_space_in_file, default) == out / "2024"
    read_only_folder = OSError(errno.EROFS, "Read-only file system", os.fsencode(out / "2024"))
    assert failed_folder(read_only_folder, default) == out / "2024"
    from_write = OSError(errno.ENOSPC, "No space left")  # write() names no file
    assert failed_folder(from_write, default) == default


def test_an_unreachable_or_vanished_mount_is_not_ready(tmp_path: Path) -> None:
    def gone_nas(path: Path) -> os.statvfs_result:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(path))

    def nothing_exists(path: Path) -> os.statvfs_result:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    def allowed(path: Path, mode: int) -> bool:
        return True

    assert not output_ready(tmp_path / "nas" / "out", 10, statvfs=gone_nas, access=allowed)
    assert not output_ready(tmp_path / "a" / "b", 10, statvfs=nothing_exists, access=allowed)


def test_readiness_of_a_folder_not_yet_created_is_asked_of_its_nearest_parent(
        tmp_path: Path) -> None:
    asked: list[tuple[Path, int]] = []

    def access(path: Path, mode: int) -> bool:
        asked.append((path, mode))
        return True

    assert output_ready(tmp_path / "not" / "yet", 10, access=access)
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]


def test_room_waited_for_is_the_file_again_between_one_block_and_one_mebibyte() -> None:
    assert room_needed(0) == 4096
    assert room_needed(1000) == 1000 + 4096
    assert room_needed(4096) == 2 * 4096
    assert room_needed(1 << 20) == 2 << 20
    assert room_needed(50 << 20) == (50 << 20) + (1 << 20)
