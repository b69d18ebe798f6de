"""Frame sources: folders, globs, video files, and live cameras that fail, recover or give up."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.errors import CameraUnavailableError, SourceError
from cytoedge.edge_app.sources import CameraSettings, CameraSource, FileListSource, VideoFileSource, open_source


def _img(value: int, shape=(40, 60, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "fields"
    d.mkdir()
    for i in (10, 2, 1):
        cv2.imwrite(str(d / f"f{i}.png"), _img(i))
    (d / "f3.png").write_bytes(b"not a png at all")
    (d / "f4.png").write_bytes(b"")
    (d / "f1_cyt01.dat").write_text("1,2\n3,4\n5,6\n")
    (d / "truth.json").write_text("{}")
    return d


def test_folder_in_natural_order_with_unreadable_files_reported(folder):
    with open_source(str(folder)) as src:
        assert isinstance(src, FileListSource) and not src.live
        frames = list(src)
    assert [f.name for f in frames] == ["f1.png", "f2.png", "f3.png", "f4.png", "f10.png"]
    assert [f.image is None for f in frames] == [False, False, True, True, False]
    assert "corrupt" in frames[2].error and frames[3].error == "empty file"
    assert int(frames[4].image[0, 0, 0]) == 10
    assert src.stats["unreadable"] == 2 and src.stats["frames"] == 3


def test_glob_single_file_and_16_bit_kept_as_stored(tmp_path):
    deep = (np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 20)
    cv2.imwrite(str(tmp_path / "a.png"), deep)
    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(_img(50), cv2.COLOR_BGR2BGRA))
    frames = list(open_source(str(tmp_path / "*.png")))
    assert [f.name for f in frames] == ["a.png", "b.png"]
    assert frames[0].image.dtype == np.uint16 and frames[1].image.shape[2] == 4
    assert len(list(open_source(str(tmp_path / "b.png")))) == 1


@pytest.mark.parametrize("spec, message", [
    ("no/such/folder", "no such file, folder or camera"),
    ("cam:x", "bad camera source"),
    ("nothing-*.png", "no image files match"),
])
def test_bad_sources_are_one_line_errors(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_empty_folder_and_unknown_file_type(tmp_path):
    with pytest.raises(SourceError, match="no image files in folder"):
        open_source(str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="neither an image nor a video"):
        open_source(str(tmp_path / "notes.txt"))


def test_video_file_frame_by_frame(tmp_path):
    path = tmp_path / "slide.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for i in range(7):
        writer.write(_img(30 * i, (48, 64, 3)))
    writer.release()
    with open_source(str(path)) as src:
        assert isinstance(src, VideoFileSource)
        frames = list(src)
    assert len(frames) == 7 and frames[0].image.shape == (48, 64, 3)
    assert frames[0].image.mean() < frames[-1].image.mean()


class FakeCamera:
    """A camera that delivers ``good`` frames, then fails every read (a pulled cable)."""

    def __init__(self, start: int, good: int, delay: float = 0.002) -> None:
        self.n, self.good, self.delay, self.released = start, good, delay, False

    def read(self):
        time.sleep(self.delay)
        if self.good <= 0:
            return False, None
        self.good -= 1
        self.n += 1
        return True, _img(self.n % 256)

    def release(self):
        self.released = True


def test_camera_that_fails_is_reopened_with_back_off_and_recovers():
    opens: list[FakeCamera] = []
    failures = iter([False, True, True, False])  # 1st open works, then 2 failed reopens, then it is back
    had_one = threading.Event()

    class FirstCamera(FakeCamera):  # its cable is pulled once the consumer has had a frame of it, however slow
        def read(self):
            if self.good <= 0:
                had_one.wait(30)
            return super().read()

    def opener():
        if next(failures, False):
            raise OSError("device busy")
        cam = (FakeCamera if opens else FirstCamera)(start=100 * len(opens), good=5 if not opens else 1000)
        opens.append(cam)
        return cam

    src = CameraSource(opener, "cam:fake", give_up_after=5.0, backoff=(0.01, 0.05))
    got = []
    with src:
        for frame in src:
            got.append(int(frame.image[0, 0, 0]))
            had_one.set()
            if got[-1] >= 100:  # a frame from the reopened camera
                break
    assert src.live and len(opens) == 2 and src.stats["reopened"] == 1
    assert opens[0].released and opens[1].released  # closed on failure and on exit
    assert got[0] < 100 <= got[-1]


def test_camera_that_never_comes_back_gives_up_with_a_clear_message():
    state = {"opened": 0}

    def opener():
        state["opened"] += 1
        if state["opened"] > 1:
            raise OSError("no such device")
        return FakeCamera(0, good=2)

    src = CameraSource(opener, "cam:7", give_up_after=1.0, backoff=(0.02, 0.1))
    t0 = time.monotonic()
    with pytest.raises(CameraUnavailableError, match=r"camera cam:7 delivered no frame for 1 s.*no such device") as got:
        with src:
            for _ in src:
                pass
    # not before its time (an upper bound would time the host); 1 s of back-off from 0.02 s holds several reopens
    assert time.monotonic() - t0 > 0.9 and state["opened"] > 2
    assert got.value.exit_code == 75  # a hardware state that may pass: the systemd unit restarts after it


def test_camera_that_cannot_open_fails_at_once():
    def opener():
        raise OSError("permission denied")

    with pytest.raises(CameraUnavailableError, match="cannot open camera cam:3: permission denied"):
        CameraSource(opener, "cam:3")


def test_live_camera_drops_old_frames_instead_of_lagging():
    cams: list[FakeCamera] = []
    src = CameraSource(lambda: cams.append(FakeCamera(0, good=10**6, delay=0.002)) or cams[-1], "cam:fast")
    seen = []
    with src:
        for frame in src:
            seen.append(int(frame.name.split("#")[1]))
            deadline = time.monotonic() + 30  # a slow consumer: the camera goes on meanwhile
            while cams[-1].n < seen[-1] + 3 and time.monotonic() < deadline:  # read 3 more: 2 published
                time.sleep(0.005)
            if len(seen) == 5:
                break
    gaps = np.diff(seen)
    assert gaps.min() > 1 and src.stats["dropped"] > 0  # frames were skipped, the newest one taken


def test_stop_from_another_thread_ends_a_waiting_camera():
    src = CameraSource(lambda: FakeCamera(0, good=1), "cam:slow", give_up_after=60.0, backoff=(0.5, 1.0))
    threading.Timer(0.3, src.stop).start()
    t0 = time.monotonic()
    with src:
        frames = list(src)
    assert len(frames) == 1 and time.monotonic() - t0 < 5.0


def test_camera_specs_build_live_sources_lazily(monkeypatch):
    opened = []

    class Cap(FakeCamera):
        def __init__(self, target, api):
            super().__init__(0, good=3)
            opened.append((target, api))

        def isOpened(self):
            return True

        def set(self, prop, value):
            return True

    monkeypatch.setattr(cv2, "VideoCapture", Cap)
    with open_source("/dev/video2", CameraSettings(give_up_after=0.2)) as src:
        assert src.live and src.description == "/dev/video2"
        assert int(next(iter(src)).image[0, 0, 0]) == 1
    with open_source("cam:1", CameraSettings(give_up_after=0.2)):
        pass
    assert opened[0] == ("/dev/video2", cv2.CAP_V4L2) and opened[1] == (1, cv2.CAP_V4L2)


def test_picam_without_picamera2_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match="apt install python3-picamera2") as got:
        open_source("picam")
    assert type(got.value) is SourceError and got.value.exit_code == 2  # set-up, not the camera: no restart


def test_gstreamer_source_needs_an_opencv_with_gstreamer(monkeypatch):
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GStreamer:  NO\n")
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_source("gst:videotestsrc ! appsink")


class FakePicamera2:
    """picamera2's Picamera2 as far as edge-app uses it: AE/AWB settle over the first frames, controls are
    recorded, and the metadata reports what is in force (the fixed values once AeEnable/AwbEnable are off)."""

    made: list["FakePicamera2"] = []

    def __init__(self, index=0):
        self.index, self.frames, self.calls, self.started = index, 0, [], False
        self.controls = {"AeEnable": True, "AwbEnable": True}
        FakePicamera2.made.append(self)

    def create_video_configuration(self, main, buffer_count, controls):
        return {"main": main, "controls": controls}

    def configure(self, config):
        self.size = config["main"]["size"]

    def start(self):
        self.started = True

    def capture_array(self, stream="main"):
        self.frames += 1
        return np.full((self.size[1], self.size[0], 3), 128, np.uint8)

    def capture_metadata(self):
        settle = min(self.frames, 20)  # the auto algorithms drift towards their values while frames flow
        md = {"ExposureTime": 4000 + 100 * settle, "AnalogueGain": 1.0 + 0.05 * settle,
              "ColourGains": (1.5 + 0.01 * settle, 2.0 - 0.01 * settle)}
        if not self.controls.get("AeEnable", True):
            md.update(ExposureTime=self.controls["ExposureTime"], AnalogueGain=self.controls["AnalogueGain"])
        if not self.controls.get("AwbEnable", True):
            md.update(ColourGains=self.controls["ColourGains"])
        return md

    def set_controls(self, controls):
        self.calls.append(dict(controls))
        self.controls.update(controls)

    def stop(self):
        self.started = False

    def close(self):
        pass


def test_picam_locks_exposure_gain_and_white_balance_together_and_keeps_them_on_a_reopen(monkeypatch):
    import sys
    import types

    FakePicamera2.made.clear()
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    src = open_source("picam", CameraSettings(width=64, height=48, lock_after=0.05))
    cam = FakePicamera2.made[0]
    assert cam.frames > 0  # it let the automatic exposure run first
    assert len(cam.calls) == 1  # one set_controls with everything: never AeEnable off alone
    locked = cam.calls[0]
    assert set(locked) == {"AeEnable", "AwbEnable", "ExposureTime", "AnalogueGain", "ColourGains"}
    assert locked["AeEnable"] is False and locked["AwbEnable"] is False
    settle = min(cam.frames, 20)
    assert locked["ExposureTime"] == 4000 + 100 * settle and locked["AnalogueGain"] == pytest.approx(1 + 0.05 * settle)
    assert src.camera_settings["locked"] and src.camera_settings["controls"] == locked  # recorded in the run
    for _ in range(5):
        cam.capture_array()
    assert cam.capture_metadata()["ExposureTime"] == locked["ExposureTime"]  # held while frames go on
    again = src._opener()  # the camera reopened after a drop-out: the same settings, not measured again
    assert FakePicamera2.made[1].calls == [locked] and FakePicamera2.made[1].frames == 0
    again.release()
    src.close()


def test_picam_with_fixed_controls_or_no_lock_time_is_left_as_configured(monkeypatch):
    import sys
    import types

    FakePicamera2.made.clear()
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    fixed = {"AeEnable": False, "ExposureTime": 8000, "AnalogueGain": 1.0}
    open_source("picam", CameraSettings(width=64, height=48, lock_after=0.05, controls=fixed)).close()
    open_source("picam", CameraSettings(width=64, height=48, lock_after=0)).close()
    assert [c.calls for c in FakePicamera2.made] == [[], []]
