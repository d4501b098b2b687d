"""Frames from files, MOTChallenge folders and live streams (cerberus.footage.video)."""

from __future__ import annotations

import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.footage.video import open_source, read_frame, source_name
from tests.footage_helpers import default_walkers, render, write_mot_folder, write_video

START = "2026-11-30T14:00:00+01:00"
START_S = 1796043600.0  # the same instant in UTC seconds


def test_file_frames_numbers_times_and_stride(tmp_path):
    path = write_video(tmp_path / "cam.mp4", frames=20)
    video = open_source(path, start=START)
    assert (video.fps, video.size, video.num_frames, video.kind) == (10.0, (256, 144), 20, "file")
    frames = list(video.frames())
    assert [f.number for f in frames] == list(range(1, 21))
    assert [f.timestamp for f in frames] == pytest.approx([START_S + i / 10 for i in range(20)])
    assert frames[0].image.shape == (144, 256, 3) and frames[0].image.dtype == np.uint8
    # the decoded frame is the one written (lossy codec: close, not equal)
    assert np.abs(frames[7].image.astype(int) - render(8, default_walkers())).mean() < 8
    strided = list(open_source(path, start=START).frames(stride=3))
    assert [f.number for f in strided] == [1, 4, 7, 10, 13, 16, 19]
    assert strided[2].timestamp == pytest.approx(START_S + 0.6)


def test_file_times_from_creation_time_or_none(tmp_path, caplog):
    caplog.set_level(logging.INFO, "cerberus")
    stamped = write_video(tmp_path / "a.mp4", frames=3, creation_time="2026-01-02T03:04:05Z")
    frames = list(open_source(stamped).frames())
    assert frames[1].timestamp == pytest.approx(1767323045.1)
    assert "creation time" in caplog.text
    plain = write_video(tmp_path / "b.avi", frames=3, codec="mjpeg")
    caplog.clear()
    frames = list(open_source(plain).frames())
    assert all(math.isnan(f.timestamp) for f in frames)
    assert "give --start" in caplog.text
    # --start wins over the creation time
    assert list(open_source(stamped, start=START).frames())[0].timestamp == START_S


def test_naive_or_bad_start_is_one_line(tmp_path):
    path = write_video(tmp_path / "a.mp4", frames=2)
    with pytest.raises(CerberusError, match="--start .*no time zone"):
        open_source(path, start="2026-11-30T14:00:00")
    with pytest.raises(CerberusError, match="--start 'yesterday': not an ISO-8601"):
        open_source(path, start="yesterday")


def test_mot_folder_frames_and_read_frame(tmp_path):
    folder = write_mot_folder(tmp_path / "MOT-01", default_walkers(), frames=8)
    video = open_source(folder, start=START)
    assert (video.kind, video.fps, video.num_frames, video.size) == ("mot", 10.0, 8, (256, 144))
    frames = list(video.frames(stride=2))
    assert [f.number for f in frames] == [1, 3, 5, 7]
    assert frames[1].timestamp == pytest.approx(START_S + 0.2)
    assert np.array_equal(read_frame(folder, 3), frames[1].image)
    with pytest.raises(CerberusError, match="frame 9 beyond its 8 frames"):
        read_frame(folder, 9)


def test_mot_folder_without_seqinfo_or_with_a_bad_one(tmp_path):
    (tmp_path / "seq" / "img1").mkdir(parents=True)
    with pytest.raises(CerberusError, match="seqinfo.ini not found"):
        open_source(tmp_path / "seq")
    (tmp_path / "seq" / "seqinfo.ini").write_text("[Sequence]\nframeRate=ten\n")
    with pytest.raises(CerberusError, match=r"seqinfo.ini: not a MOTChallenge seqinfo.ini"):
        open_source(tmp_path / "seq")


@pytest.mark.parametrize("number", [1, 2, 9, 17, 30])
def test_read_frame_of_a_file_is_the_decoded_frame(tmp_path, number):
    path = write_video(tmp_path / "cam.mp4", frames=30)
    decoded = {f.number: f.image for f in open_source(path).frames()}
    assert np.array_equal(read_frame(path, number), decoded[number])
    with pytest.raises(CerberusError, match="frame 31 beyond the end"):
        read_frame(path, 31)


def test_not_a_video_missing_and_truncated_files(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    with pytest.raises(CerberusError, match=r"notes.mp4: not a video FFmpeg can read"):
        open_source(text)
    with pytest.raises(CerberusError, match=r"nothere.mp4: no such file"):
        open_source(tmp_path / "nothere.mp4")
    # an MP4 cut in half has lost its index (moov atom at the end): not readable
    whole = write_video(tmp_path / "whole.mp4", frames=20).read_bytes()
    (tmp_path / "half.mp4").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CerberusError, match=r"half.mp4: not a video FFmpeg can read"):
        open_source(tmp_path / "half.mp4")


def test_truncated_stream_file_gives_the_frames_before_the_cut(tmp_path):
    whole = write_video(tmp_path / "whole.ts", frames=40).read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole[: len(whole) // 2])
    frames = list(open_source(cut, start=START).frames())
    assert 5 < len(frames) < 40
    assert [f.number for f in frames] == list(range(1, len(frames) + 1))


def test_corrupt_bytes_in_the_middle_do_not_stop_with_a_traceback(tmp_path):
    data = bytearray(write_video(tmp_path / "whole.ts", frames=40).read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle : middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "bad.ts").write_bytes(bytes(data))
    frames = list(open_source(tmp_path / "bad.ts").frames())
    assert 10 < len(frames) <= 40


def test_unsupported_codec_is_one_line(tmp_path):
    data = write_video(tmp_path / "ok.avi", frames=3, codec="mjpeg").read_bytes()
    assert data.count(b"MJPG") >= 1
    (tmp_path / "odd.avi").write_bytes(data.replace(b"MJPG", b"QQZZ"))
    with pytest.raises(CerberusError, match=r"odd.avi: its video codec .*cannot be decoded"):
        list(open_source(tmp_path / "odd.avi").frames())


def test_source_name_hides_stream_credentials(tmp_path):
    assert (
        source_name("rtsp://admin:secret@10.0.0.5:554/live?ch=1") == "rtsp://10.0.0.5:554/live?ch=1"
    )
    assert source_name(tmp_path / "a" / ".." / "v.mp4") == str((tmp_path / "v.mp4").resolve())


# --------------------------------------------------------------------------- live streams


class _StreamServer:
    """Serves an MPEG-TS file over HTTP on 127.0.0.1 in small timed chunks, as a camera's live
    stream arrives. ``cut``: fraction of the file the first connection gets before the server
    drops it; ``serve``: how many connections are answered before it refuses (closes)."""

    def __init__(self, data: bytes, *, cut: float = 1.0, serve: int = 1) -> None:
        self.data, self.cut, self.left = data, cut, serve
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                outer.connections += 1
                if outer.left <= 0:
                    self.send_error(404)
                    return
                outer.left -= 1
                first = outer.connections == 1
                end = int(len(outer.data) * (outer.cut if first else 1.0))
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                try:
                    for i in range(0, end, 4096):
                        self.wfile.write(outer.data[i : min(i + 4096, end)])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/live.ts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_stream_is_followed_to_its_end(tmp_path):
    data = write_video(tmp_path / "live.ts", frames=30).read_bytes()
    with _StreamServer(data, serve=1) as server:
        video = open_source(server.url, reconnect=0)
        assert video.kind == "stream" and video.name == server.url
        frames = list(video.frames())
    assert len(frames) == 30
    assert [f.number for f in frames] == list(range(1, 31))
    stamps = [f.timestamp for f in frames]
    assert all(b >= a for a, b in zip(stamps, stamps[1:]))
    assert video.dropped.endswith("30 frame(s) received")


def test_stream_that_drops_reconnects_then_ends_with_a_clear_reason(tmp_path, caplog):
    data = write_video(tmp_path / "live.ts", frames=30).read_bytes()
    with _StreamServer(data, cut=0.5, serve=2) as server:
        video = open_source(server.url, reconnect=1)
        frames = list(video.frames())
    # the first connection gave about half the frames, the reconnection the same content
    # from its start again: only the frames after those already received are given
    assert len(frames) == 30
    assert [f.number for f in frames] == list(range(1, 31))
    assert server.connections == 3
    assert "reconnecting in 0.5 s (1/1)" in caplog.text
    assert "1 reconnect(s) failed (" in video.dropped and "404" in video.dropped


def test_stream_stop_ends_the_frames(tmp_path):
    data = write_video(tmp_path / "live.ts", frames=30).read_bytes()
    with _StreamServer(data, serve=1) as server:
        video = open_source(server.url, reconnect=0)
        got = []
        for frame in video.frames():
            got.append(frame.number)
            if frame.number == 5:
                video.stop()
    assert got == [1, 2, 3, 4, 5] and video.dropped == ""


def test_stream_nobody_serves(tmp_path):
    # tried when opened: an error at once, without the URL's password
    with pytest.raises(CerberusError, match=r"^rtsp://127.0.0.1:1/x: could not open the stream"):
        open_source("rtsp://admin:secret@127.0.0.1:1/x", reconnect=0)
    with pytest.raises(CerberusError, match=r"^http://127.0.0.1:9/none.ts: could not open"):
        open_source("http://127.0.0.1:9/none.ts", reconnect=0)
