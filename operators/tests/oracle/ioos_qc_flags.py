#!/usr/bin/env python3
"""Oracle for operators/src/qc_flags.rs: runs the ioos_qc 3.0.0 QARTOD tests.

Usage: ioos_qc_flags.py INPUT.json OUTPUT.json

Called by operators/tests/ioos_qc_oracle.rs with the interpreter named by
SCENT_IOOS_QC_PYTHON (see deploy/dev/ioos-qc.sh). INPUT holds generated
series; for each one this script runs ioos_qc's gross_range_test,
spike_test, rate_of_change_test, flat_line_test, time_gap_test,
data_reception_test and qartod_compare (the aggregate of the four value
tests) and writes their flags, as QARTOD codes, to OUTPUT.

Input:  {"series": [{"name": str,
                     "t_ms": [int],                  # event times, ms since the epoch
                     "x": [float | null],            # null = missing (NaN)
                     "gross_range": {"fail_span": [lo, hi], "suspect_span": [lo, hi] | null},
                     "spike": {"suspect_threshold": float, "fail_threshold": float,
                               "method": "average" | "differential"},
                     "rate_of_change": {"threshold": float, "fail_threshold": float | null},
                     "flat_line": {"suspect_threshold_s": int, "fail_threshold_s": int,
                                   "tolerance": float},
                     "time_gap": {"fail_span_ms": int},
                     "data_reception": {"fail_span_ms": int, "from_ms": int}}]}
Output: {"ioos_qc_version": str,
         "series": [{"name": str, "gross_range": [int], "spike": [int], "rate_of_change": [int],
                     "flat_line": [int], "aggregate": [int], "time_gap": [int],
                     "data_reception": [int],
                     "flat_line_counts": {"suspect": int, "fail": int}}]}

flat_line_counts are the window lengths (in readings) that flat_line_test derives
from its thresholds, computed exactly as ioos_qc does
(int(threshold) / median(diff(t)) truncated to seconds), so the Rust test can
explain where its event-time window holds other readings.
"""

import json
import sys
import warnings

import numpy as np

import ioos_qc
from ioos_qc import qartod

MS_PER_HOUR = 3_600_000


def hours(span_ms):
    """A span in hours that ioos_qc turns back into exactly span_ms."""
    value = span_ms / MS_PER_HOUR
    if int(value * 3600) * 1000 != span_ms:
        msg = f"{span_ms} ms does not survive ioos_qc's int(hours * 3600) seconds"
        raise ValueError(msg)
    return value


def flat_line_count(t, threshold_s):
    """The window length flat_line_test uses, in readings (its own formula)."""
    interval = np.median(np.diff(t)).astype("timedelta64[s]").astype(float)
    return int((int(threshold_s) / interval).astype(int))


def codes(flags):
    return [int(v) for v in np.ma.filled(flags, 0)]


def run(series):
    t = np.array(series["t_ms"], dtype="int64").astype("datetime64[ms]")
    x = np.array([np.nan if v is None else v for v in series["x"]], dtype="float64")
    gross = series["gross_range"]
    spike = series["spike"]
    rate = series["rate_of_change"]
    flat = series["flat_line"]
    gross_range = qartod.gross_range_test(
        x, fail_span=tuple(gross["fail_span"]),
        suspect_span=None if gross["suspect_span"] is None else tuple(gross["suspect_span"]),
    )
    spikes = qartod.spike_test(
        x, suspect_threshold=spike["suspect_threshold"],
        fail_threshold=spike["fail_threshold"], method=spike["method"],
    )
    rate_of_change = qartod.rate_of_change_test(
        x, t, threshold=rate["threshold"], fail_threshold=rate["fail_threshold"],
    )
    flat_line = qartod.flat_line_test(
        x, t, suspect_threshold=flat["suspect_threshold_s"],
        fail_threshold=flat["fail_threshold_s"], tolerance=flat["tolerance"],
    )
    aggregate = qartod.qartod_compare([gross_range, spikes, rate_of_change, flat_line])
    time_gap = qartod.time_gap_test(t, fail_span=hours(series["time_gap"]["fail_span_ms"]))
    reception = series["data_reception"]
    data_reception = qartod.data_reception_test(
        t, fail_span=hours(reception["fail_span_ms"]),
        from_time=np.datetime64(reception["from_ms"], "ms"),
    )
    return {
        "name": series["name"],
        "gross_range": codes(gross_range),
        "spike": codes(spikes),
        "rate_of_change": codes(rate_of_change),
        "flat_line": codes(flat_line),
        "aggregate": codes(aggregate),
        "time_gap": codes(time_gap),
        "data_reception": codes(data_reception),
        "flat_line_counts": {
            "suspect": flat_line_count(t, flat["suspect_threshold_s"]),
            "fail": flat_line_count(t, flat["fail_threshold_s"]),
        },
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        request = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = [run(series) for series in request["series"]]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"ioos_qc_version": ioos_qc.__version__, "series": results}, f)


if __name__ == "__main__":
    main()
