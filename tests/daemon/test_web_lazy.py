"""The page's libraries (Flask, Jinja2, prometheus_client) are loaded at the first request, not
at start: a daemon whose page nobody opens does not carry them; what it did before is still
counted. Without them: one log line, and the daemon runs without its page."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo
from helpers.paths import TESTS_DIR

import rotwatchd.web.page as page

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from helpers import MarkerClassifier, Results, fast_config, make_photo
    from loaded_libraries import loaded
    from rotwatchd.service.daemon import Daemon
    from rotwatchd.web.page import page_for
    from helpers.web_client import call

    tmp = Path(sys.argv[1])
    config = fast_config(tmp, web={"listen": "127.0.0.1:0"})
    classifier = MarkerClassifier()
    daemon = Daemon(config, classifier_factory=lambda model: classifier, page=page_for)
    results = Results()
    daemon.add_result_listener(results)
    daemon.start()
    try:
        make_photo(config.inboxes[0].path / "a.jpg", correction=90)
        results.wait_count(1)
        before = loaded()
        reply = call(daemon.web.url, "/metrics")
        after = loaded()
    finally:
        daemon.stop()
    print(json.dumps({"before": before, "after": after, "status": reply.status,
                      "metrics": reply.text}))
""")

HELPER = textwrap.dedent("""
    import sys
    def loaded():
        return sorted(n for n in ("flask", "jinja2", "prometheus_client") if n in sys.modules)
""")


def test_the_libraries_load_at_the_first_request_and_earlier_files_are_counted(
        tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    (tmp_path / "loaded_libraries.py").write_text(HELPER)
    (tmp_path / "run.py").write_text(SCRIPT)
    (tmp_path / "work").mkdir()
    tests = TESTS_DIR
    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "work"),
                           str(tests)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{tests}:"
                                             f"{Path(page.__file__).parents[2]}",
                                             "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["before"] == []  # started, one file done, nobody looked: none loaded
    assert result["after"] == ["flask", "jinja2", "prometheus_client"]
    assert result["status"] == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(result["metrics"]) for s in f.samples}
    assert samples[("rotwatchd_files_total", (("outcome", "done"),))] == 1
    assert samples[("rotwatchd_processing_seconds_count", ())] == 1


def test_without_the_web_libraries_the_daemon_runs_without_its_page(
        tmp_path: Path, daemon_factory: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page, "REQUIRED", ("flask", "no_such_web_library"))
    caplog.set_level(logging.INFO)
    config = fast_config(tmp_path, web={"listen": "127.0.0.1:0"})
    daemon, results = daemon_factory(config)
    make_photo(config.inboxes[0].path / "a.jpg", correction=90)
    (result,) = results.wait_count(1)
    assert result.outcome == "done" and daemon.web is None
    lines = [r.getMessage() for r in caplog.records if "web page off" in r.getMessage()]
    assert lines == ["web page off: no_such_web_library not installed (install rotwatchd[web], "
                     "or set web.listen: null)"]
