"""The soak script, briefly: ten seconds of mixed traffic from several NASes, nothing lost or wrong.

The long run (``python tests/tools/soak.py --seconds 300``) is outside the suite; this runs the
same code for ten seconds.
"""

from __future__ import annotations

import pytest
from tools.soak import FLOW_WEIGHTS, Options, run_soak


@pytest.mark.slow
def test_ten_seconds_of_mixed_traffic_lose_nothing_and_answer_everything_right() -> None:
    """Every login of every flow gets its known outcome; retransmissions never reach FIC."""
    report = run_soak(Options(seconds=10, nases=3, sessions=3, seed=5))

    assert report.lost == 0, report.text()
    assert report.wrong == 0, report.text()
    assert report.extra_fic_calls == 0, report.text()
    assert not report.crashed and report.exit_status == 0, report.text()
    assert report.internal_errors == [], report.text()
    assert report.ok
    # Not vacuous: every flow ran, NASes retransmitted, and the bridge dropped the garbage.
    assert {name for name, stats in report.flows.items() if stats.right} == set(FLOW_WEIGHTS)
    assert report.retransmissions > 0 and report.duplicates_sent > 0
    assert report.resends_after_answer > 0 and report.identical_repeats > 0
    assert report.fic_pushes == report.push_logins > 0
    assert sum(report.bridge_drops.values()) >= report.garbage_sent > 0, report.bridge_drops
    assert len(report.rss_kib) >= 2
