"""tools.ohem_check: what it counts of the rows GluonCV's own scripts train."""
import numpy as np
import pytest

pytest.importorskip('gluoncv')


def test_ohem_check_counts_trained_rows_and_keeps_the_first_step_apart():
    import mxnet as mx
    from tools.ohem_check import _Rows
    rows = _Rows(0, 1)
    logits = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]]], np.float32)  # (1, 3 rows, 2)
    target = np.array([[0, 1, -1]], np.float32)  # a background row, a positive, an ignored row
    rows.saw_outputs([mx.nd.array(logits), mx.nd.array(target)])
    want = [np.log(2.0), np.log1p(np.exp(2.0))]  # cross-entropy of the two trained rows
    c = rows.counts
    assert (c['iterations'], c['rows'], c['positives'], c['first_rows']) == (1, 2, 1, 2)
    assert np.isclose(c['loss_sum'], sum(want), rtol=1e-5)
    assert np.isclose(c['first_mean_cls_loss'], np.mean(want), rtol=1e-5)
    rows.saw_outputs([mx.nd.array(logits), mx.nd.array(np.full((1, 3), -1, np.float32))])
    assert c['iterations'] == 2 and c['rows'] == 2  # a step training nothing adds no row
    assert np.isclose(c['first_mean_cls_loss'], np.mean(want), rtol=1e-5)
