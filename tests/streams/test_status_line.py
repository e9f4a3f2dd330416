"""The status line of `migrator stats --watch`: every figure an operator reads at a glance."""

from __future__ import annotations

from streams.cli.status_line import duration, finished, status_line

PROGRESS = {
    "legacy_total": 60225,
    "migrated": 12345,
    "failed_for_good": 100,
    "remaining": 47780,
    "percent": 20.67,
    "rate_per_s": 2412.4,
    "eta_s": 19.8,
    "backlog": 1204,
    "stats": {"failed": 123},
}


def test_the_line_holds_done_total_rate_backlog_failures_eta_and_elapsed() -> None:
    line = status_line(PROGRESS, elapsed_s=305, clock="07:31:02")
    assert line == (
        "[07:31:02] migrated 12,345 of 60,225; done 12,445 (20.7%); 2,412/s; backlog 1,204; "
        "failed 123 (100 for good); ETA 0s; elapsed 5m05s"
    )


def test_unknown_figures_show_as_a_question_mark() -> None:
    line = status_line({**PROGRESS, "backlog": None, "eta_s": None}, elapsed_s=0, clock="x")
    assert "backlog ?" in line and "ETA ?" in line


def test_durations_and_the_end_of_a_run() -> None:
    assert [duration(s) for s in (0, 59.6, 61, 7_500)] == ["0s", "1m00s", "1m01s", "2h05m"]
    assert not finished(PROGRESS)
    assert not finished({**PROGRESS, "backlog": None})  # unknown is not done
    assert finished({**PROGRESS, "backlog": 0})


def test_a_pause_or_a_throttle_ends_the_line() -> None:
    progress = {
        "legacy_total": 10,
        "remaining": 5,
        "migrated": 5,
        "percent": 50.0,
        "rate_per_s": 0.0,
        "failed_for_good": 0,
        "backlog": 5,
        "control": {"paused": True, "auto": True, "by": "auto: w:1", "reason": "budget spent"},
    }
    line = status_line(progress, elapsed_s=3, clock="12:00:00")
    assert line.endswith("; AUTO-PAUSED by auto: w:1: budget spent")
    progress["control"] = {"paused": False, "throttle_per_s": 250.0}
    assert status_line(progress, elapsed_s=3, clock="12:00:00").endswith("; throttled to 250/s")


def test_a_paused_cluster_with_a_backlog_is_stalled_and_says_why() -> None:
    from streams.cli.status_line import stalled

    paused = {
        "backlog": 1377,
        "control": {"paused": True, "auto": True, "by": "w:1", "reason": "budget"},
    }
    line = stalled(paused)
    assert line is not None and "auto-paused with 1,377 requests waiting" in line
    assert "budget" in line and "migrator control resume" in line
    assert stalled({**paused, "backlog": 0}) is None  # done is done, paused or not
    assert stalled({"backlog": 5, "control": {"paused": False}}) is None


def test_the_watch_until_done_ends_in_one_line_on_a_paused_cluster() -> None:
    """``make demo`` run twice printed the same AUTO-PAUSED line every second forever."""
    import http.server
    import json
    import subprocess
    import sys
    import threading

    progress = {
        "legacy_total": 10,
        "migrated": 4,
        "remaining": 6,
        "percent": 40.0,
        "rate_per_s": 0.0,
        "failed_for_good": 0,
        "backlog": 6,
        "eta_s": None,
        "stats": {"failed": 26},
        "control": {"paused": True, "auto": True, "by": "w:1", "reason": "failure budget"},
    }

    class Progress(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(progress).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Progress)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        watch = subprocess.run(
            [sys.executable, "-m", "streams.cli", "stats", "--watch", "--until-done"]
            + ["--interval", "0.5", "--url", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.shutdown()
    assert watch.returncode == 2
    [line] = watch.stderr.strip().splitlines()
    assert "auto-paused with 6 requests waiting" in line and "failure budget" in line


def test_an_outage_line_names_each_server_down_and_since_when() -> None:
    from streams.cli.status_line import down_servers, outage_line

    health = {
        "checks": {
            "postgres": {"ok": False, "error": "refused", "since": "13:42:05"},
            "redis": {"ok": True},
            "kafka": {"ok": False, "error": "not answering"},
            "processing": {"ok": False, "error": "waiting for PostgreSQL"},
        }
    }
    assert down_servers(health) == "PostgreSQL down since 13:42:05, Kafka down"
    assert outage_line(health, clock="13:43:00", fallback="503") == (
        "[13:43:00] progress unknown: PostgreSQL down since 13:42:05, Kafka down; the worker "
        "goes on by itself when it is back"
    )
    assert outage_line({}, clock="x", fallback="the worker answered 503") == (
        "[x] progress unknown: the worker answered 503"
    )


def test_the_eta_is_the_backlogs_done_at_zero_whatever_the_population_has_left() -> None:
    """Rolled-back and failing-for-good users are held out of every run: the population's
    ETA (eta_s) never reaches 0 after a run; the watch says the backlog's."""
    line = status_line({**PROGRESS, "backlog": 0, "eta_s": 37.0}, elapsed_s=0, clock="x")
    assert "ETA done" in line
    line = status_line(
        {**PROGRESS, "backlog": 24_124, "rate_per_s": 2412.4}, elapsed_s=0, clock="x"
    )
    assert "ETA 10s" in line
