"""samplers.checks: argument and array checks, and the one reading of hard flags."""
import mxnet as mx
import numpy as np
import pytest

from samplers import (HardRule, OHEMSampler, QuotaSampler, RPNTargetGenerator,
                      RPNTargetSampler, SSDTargetGenerator, checks)
from samplers.rcnn import RCNNTargetSampler
from samplers.rpn_ohem import hardest_anchors
from samplers._arrays import force_ndarray_backend


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize('value', [0, -3, 1.5, 'x', True])
def test_check_int_rejects_with_name(value):
    with pytest.raises(ValueError, match='num_sample'):
        checks.check_int('num_sample', value, minimum=1)


@pytest.mark.parametrize('value', [-0.1, 1.1, float('nan'), 'a'])
def test_check_ratio_rejects_with_name(value):
    with pytest.raises(ValueError, match='pos_ratio'):
        checks.check_ratio('pos_ratio', value)


@pytest.mark.parametrize('value, kwargs', [(0, {}), (-1, {'zero_ok': True}), (np.inf, {}),
                                           (np.nan, {}), (True, {}), ('3', {})])
def test_check_positive_rejects_with_name(value, kwargs):
    with pytest.raises(ValueError, match='width must be a number'):
        checks.check_positive('width', value, **kwargs)


def test_check_positive_accepts_zero_and_inf_only_when_asked():
    assert checks.check_positive('b', 0, zero_ok=True) == 0.0
    assert checks.check_positive('b', np.inf, zero_ok=True, inf_ok=True) == np.inf


# An integer beyond int64 is read as the float it equals (numpy refuses it in isnan and
# isfinite), and one beyond float64 is refused naming the argument.
@pytest.mark.parametrize('check, args', [
    (checks.check_thresh, ()), (checks.check_min_size, ()), (checks.check_positive, ()),
    (checks.check_ratio, (0, 10.0 ** 40))], ids=['thresh', 'min_size', 'positive', 'ratio'])
def test_real_checks_read_an_integer_beyond_int64_as_its_float(check, args):
    assert check('arg', 10 ** 30, *args) == 1e30


@pytest.mark.parametrize('check, args', [
    (checks.check_thresh, ()), (checks.check_min_size, ()), (checks.check_positive, ()),
    (checks.check_ratio, ()), (checks.check_ratio, (0, 10.0 ** 40))],
    ids=['thresh', 'min_size', 'positive', 'ratio', 'wide_ratio'])
@pytest.mark.parametrize('value', [10 ** 400, -10 ** 400], ids=['1e400', '-1e400'])
def test_real_checks_refuse_an_integer_beyond_float_naming_the_argument(check, args, value):
    with pytest.raises(ValueError, match='arg must be .*got an integer of 401 digits'):
        check('arg', value, *args)


@pytest.mark.parametrize('make, name', [
    (lambda v: RPNTargetGenerator(pos_iou_thresh=v)._sampler, 'pos_iou_thresh'),
    (lambda v: SSDTargetGenerator(hard=HardRule(min_size=v)), 'min_size')],
    ids=['rpn_thresh', 'ssd_min_size'])
def test_constructors_take_an_integer_beyond_int64_as_its_float(make, name):
    assert repr(make(10 ** 30)) == repr(make(1e30))
    assert '=1e+30' in repr(make(10 ** 30))
    with pytest.raises(ValueError, match=name):
        make(10 ** 400)


def test_check_count_keeps_an_integer_beyond_int64_and_refuses_one_beyond_float():
    assert checks.check_count('num_sample', 10 ** 20, minimum=1) == 10 ** 20
    with pytest.raises(ValueError, match='num_sample must be .*got an integer of 401 digits'):
        checks.check_count('num_sample', 10 ** 400, minimum=1)


@pytest.mark.parametrize('make', [
    lambda v: QuotaSampler(v, 0.5, 0.3),
    lambda v: RPNTargetSampler(v, 0.7, 0.3, 0.5),
    lambda v: RPNTargetGenerator(num_sample=v),
    lambda v: RCNNTargetSampler(2, 60, v),
    lambda v: hardest_anchors(np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32), v)],
    ids=['quota', 'rpn_sampler', 'rpn_generator', 'rcnn', 'rpn_ohem'])
def test_num_sample_beyond_float_is_refused_naming_it(make):
    make(10 ** 20)  # beyond int64: every candidate (test_num_sample_beyond_int32_*)
    with pytest.raises(ValueError, match='num_sample must be'):
        make(10 ** 400)


def test_check_ratio_refuses_an_integer_beyond_int64_outside_its_range_naming_it():
    with pytest.raises(ValueError, match=r'pos_ratio must be in \[0.0, 1.0\], got 1e\+30'):
        checks.check_ratio('pos_ratio', 10 ** 30)


def test_check_stds_refuses_an_integer_beyond_float_naming_the_argument():
    with pytest.raises(ValueError, match='stds must be 4 positive numbers'):
        checks.check_stds('stds', (1, 1, 10 ** 400, 1))


@pytest.mark.parametrize('stds', [(1, 1, 1), (1, 1, 0, 1), (1, 1, np.inf, 1), 'abcd', None])
def test_check_stds_wants_four_positive_finite_numbers(stds):
    with pytest.raises(ValueError, match='stds'):
        checks.check_stds('stds', stds)


@pytest.mark.parametrize('value', [True, False, np.bool_(True), np.bool_(False)])
def test_check_bool_takes_a_bool_or_numpy_bool(value):
    assert checks.check_bool('flag', value) is bool(value)


@pytest.mark.parametrize('value', [0, 1, 2, np.int64(1), 1.0, 'False', 'no', '', None, [True]])
def test_check_bool_refuses_anything_else_naming_the_argument(value):
    with pytest.raises(ValueError, match='flag must be True or False'):
        checks.check_bool('flag', value)


# ----------------------------------------------------------------------------- arrays
def test_check_same_kind_names_every_array_and_skips_none():
    assert checks.check_same_kind([('a', mx.nd.zeros(1)), ('b', None)])
    assert not checks.check_same_kind([('a', np.zeros(1)), ('b', None)])
    with pytest.raises(ValueError, match=r'a and b must all be NDArrays or all numpy.*b ndarray'):
        checks.check_same_kind([('a', mx.nd.zeros(1)), ('b', np.zeros(1))])


def test_check_one_context_names_each_context():
    with pytest.raises(ValueError, match=r'a and b must be on one context.*b on cpu\(1\)'):
        checks.check_one_context([('a', mx.nd.zeros(1, ctx=mx.cpu(0))),
                                  ('b', mx.nd.zeros(1, ctx=mx.cpu(1)))])


def test_check_dtype_says_float_or_numeric():
    checks.check_dtype('x', np.zeros(1, np.int32), 'iuf')
    with pytest.raises(ValueError, match='ious must have a float dtype, got int32'):
        checks.check_dtype('ious', np.zeros(1, np.int32))
    with pytest.raises(ValueError, match='x must have a numeric dtype'):
        checks.check_dtype('x', np.zeros(1, bool), 'iuf')


# ----------------------------------------------------------------------------- hard flags
def test_check_dtype_refuses_a_list_naming_the_argument():
    with pytest.raises(ValueError, match='ious must be a numpy array or an NDArray, got list'):
        checks.check_dtype('ious', [[0.5]])


def test_ohem_sampler_given_lists_names_the_argument():
    x, logits, ious = [[1, 0, 0]], [[[0.1, 0.2], [0.3, 0.1], [0.2, 0.2]]], [[0.6, 0.1, 0.0]]
    with pytest.raises(ValueError, match='x must be a numpy array or an NDArray, got list'):
        OHEMSampler(3)(x, logits, ious)


def test_check_flags_accepts_zero_one_and_bool_and_rejects_others():
    np.testing.assert_array_equal(checks.check_flags('hard', np.array([0, 1.0])), [False, True])
    np.testing.assert_array_equal(checks.check_flags('hard', np.array([True, False])),
                                  [True, False])
    with pytest.raises(ValueError, match='hard'):
        checks.check_flags('hard', np.array([0, 2]))


def test_hard_flags_minus_one_is_padding_and_not_hard():
    got = checks.hard_flags(np.array([1, 0, -1]), 3, against='boxes (3, 4)')
    np.testing.assert_array_equal(got, [True, False, False])


@pytest.mark.parametrize('flags', [[0.5, 0, 0], [2, 0, 0], [-2, 0, 0], [np.nan, 0, 0]])
def test_hard_flags_other_values_raise_value_error_naming_the_argument(flags):
    with pytest.raises(ValueError, match=r'hard must hold 0/1 flags \(-1 marks a padding row\)'):
        checks.hard_flags(np.array(flags), 3, against='boxes (3, 4)')


@pytest.mark.parametrize('flags', [np.zeros(2), np.zeros(4)])
def test_hard_flags_need_one_flag_per_box_no_padding_by_length(flags):
    with pytest.raises(ValueError, match=r'hard must have shape \(M,\) = \(3,\) to go with '
                                         r'boxes \(3, 4\), got \(\d,\)'):
        checks.hard_flags(flags, 3, against='boxes (3, 4)')


def test_hard_flags_per_image_or_shared_as_the_caller_allows():
    assert checks.hard_flags(np.zeros(3), 3, batch=2, against='x').shape == (3,)
    assert checks.hard_flags(np.zeros((2, 3)), 3, batch=2, against='x').shape == (2, 3)
    with pytest.raises(ValueError, match=r'\(B, M\) = \(2, 3\) to go with x, got \(3,\)'):
        checks.hard_flags(np.zeros(3), 3, batch=2, per_image=False, against='x')


def test_hard_flags_none_is_none():
    assert checks.hard_flags(None, 3, against='x') is None


def test_hard_flags_on_the_device_path_read_nothing_and_agree_with_the_host():
    flags = np.array([1, 0, -1], np.float32)
    with force_ndarray_backend():
        on_device = checks.hard_flags(mx.nd.array(flags), 3, against='x')
        unread = checks.hard_flags(mx.nd.array([2, 0, 0]), 3, against='x')  # values unread
    assert isinstance(on_device, mx.nd.NDArray)
    np.testing.assert_array_equal(on_device.asnumpy(), checks.hard_flags(flags, 3, against='x'))
    np.testing.assert_array_equal(unread.asnumpy(), [1, 0, 0])


def test_hard_flags_on_cpu_ndarrays_are_read_on_the_host_and_checked():
    with pytest.raises(ValueError, match='hard'):
        checks.hard_flags(mx.nd.array([2, 0, 0]), 3, against='x')


def test_hard_on_device_gives_zeros_for_none_and_float_flags_for_host_flags():
    np.testing.assert_array_equal(checks.hard_on_device(None, 3, mx.cpu()).asnumpy(), [0, 0, 0])
    got = checks.hard_on_device(np.array([True, False]), 2, mx.cpu())
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.asnumpy(), [1, 0])
