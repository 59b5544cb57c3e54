"""The background loss mining ranks by, and a ranking that computes few of them.

:func:`background_loss_F` / :func:`background_loss` give ``-log
softmax(logits)[..., 0]`` without overflow for any finite logits.
:class:`BackgroundRanking` picks each image's hardest candidates by that loss
on the host, computing it exactly only for the anchors that can be picked:
:mod:`samplers.ohem` and :mod:`samplers.ssd` mine with it on CPU.
"""
from __future__ import annotations

import numpy as np

from ._arrays import finite_rows_F
from ._threads import host_threads, map_blocks

__all__ = ['background_loss_F', 'background_loss', 'BackgroundRanking']


def background_loss_F(F, logits):
    """Background cross-entropy ``-log softmax(logits)[..., 0]`` and a finiteness flag.

    ``logits`` (..., C) with C >= 2, class 0 background, an ``F`` array.
    With ``m`` the row's largest logit and ``S = sum_{c>=1} exp(l_c - m)``,
    the loss is ``(m - l_0) + log1p(expm1(l_0 - m) + S)``: every exponent is
    <= 0, so any finite logits (even +-1e4) give a finite, correctly ordered
    loss, and a confident background (``m = l_0``) keeps the precision of
    ``log1p(S)``. Returns ``(loss, finite)``, both (...): ``finite`` is 1
    where every logit of the row is finite, 0 elsewhere (``loss`` is
    meaningless there).
    """
    l0 = F.slice_axis(logits, axis=-1, begin=0, end=1)
    top = F.max(logits, axis=-1, keepdims=True)
    fg = F.slice_axis(logits, axis=-1, begin=1, end=None)
    tail = F.sum(F.exp(F.broadcast_sub(fg, top)), axis=-1)
    gap = F.squeeze(top - l0, axis=-1)
    loss = gap + F.log1p(F.expm1(-gap) + tail)
    finite = finite_rows_F(F, logits)
    return loss, finite


def background_loss(logits, block_rows=8192, threads=None):
    """numpy twin of :func:`background_loss_F`: ``(loss, finite)`` of shape (...).

    ``finite`` is boolean. The same loss (to a few ulps), ``block_rows`` anchors at a time so
    the exponentials stay in cache: ``log1p(sum_{c>=1} exp(l_c - l_0))``, row sums by
    ``einsum`` (no BLAS threads), and where that sum overflows the log of the sum shifted by
    the row's largest logit. Computed in float32 (float64 for float64 input).

    Each value is a function of the row's differences ``l_c - l_0`` alone, as
    :func:`background_loss_F`'s: rows that differ by a constant have equal losses, bit for
    bit, so the tie rule decides between them on the host as on the device. Each row's loss
    depends on that row alone (not on its block or thread), so any subset of rows gives the
    same values bit for bit. Blocks are shared out over ``threads`` threads (default
    :func:`samplers._threads.host_threads`; numpy releases the GIL in these loops).
    """
    logits = np.asarray(logits)
    dtype = _dtype(logits)
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    loss = np.empty(flat.shape[0], dtype)
    finite = np.ones(flat.shape[0], bool)
    _shared(lambda part: _exact_rows(flat[part], loss[part], finite[part], dtype, block_rows),
            flat.shape[0], block_rows, threads)
    return loss.reshape(shape), finite.reshape(shape)


def _dtype(logits):
    return np.result_type(logits.dtype, np.float32)


def _shared(fn, total, block_rows, threads):
    """``fn(part)`` over ``total`` rows cut into one run of whole blocks per thread."""
    blocks = -(-total // block_rows)
    threads = min(host_threads() if threads is None else threads, max(blocks, 1))
    edges = [block_rows * (blocks * i // threads) for i in range(threads)] + [total]
    map_blocks(fn, [slice(a, b) for a, b in zip(edges, edges[1:])], threads)


def _exact_rows(rows, loss, finite, dtype, block_rows):
    """:func:`background_loss` of ``rows`` (R, C): writes ``loss`` (R,) and clears
    ``finite`` (R,) of rows with a non-finite logit, one block of ``block_rows`` at a
    time. Every step is per row."""
    buf = np.empty((min(block_rows, rows.shape[0]), rows.shape[1]), dtype)
    with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
        for start in range(0, rows.shape[0], block_rows):
            block = rows[start:start + block_rows].astype(dtype, copy=False)
            out = loss[start:start + block.shape[0]]
            diff = buf[:block.shape[0]]
            np.subtract(block, block[:, :1], out=diff)
            np.exp(diff, out=diff)
            np.einsum('ij->i', diff[:, 1:], out=out)
            np.log1p(out, out=out)
            if not (np.isfinite(block.min()) and np.isfinite(block.max())):  # NaN too
                finite[start:start + block.shape[0]] = np.isfinite(block).all(axis=1)
            over = np.flatnonzero(~(out < np.inf))
            over = over[finite[start + over]]
            if over.size:  # the sum overflows: the log of the sum, shifted by the row's max
                some = block[over]
                top = some.max(axis=1, keepdims=True)
                out[over] = np.log(np.exp(some - top).sum(axis=1)) + (top[:, 0] - some[:, 0])


# --------------------------------------------------------------------------- the ranking
#: The first pass's exponential: the float32 whose bits are ``int(x * _SCALE + _ONE)``,
#: 2**floor(t) * (1 + frac(t)) for t = x / log(2). That lies between exp(x) and 1.0615
#: exp(x) (a chord of the convex 2**f on [0, 1]), within 3e-5 more for rounding, while
#: x * _SCALE + _ONE stays in [2**23, 255 * 2**23), the bits of the finite normal floats:
#: x in about (-87.3, 88.7).
_SCALE = np.float32(2 ** 23 / np.log(2))
_ONE = np.float32(127 * 2 ** 23)
_LOWEST_BITS, _END = 2 ** 23, np.float32(255 * 2 ** 23)
#: A ratio of two sums of such exponentials lies within a factor _SLACK of the exact ratio.
_SLACK = np.float32(1.0625)
#: Rows estimated at or above this get their exact loss at once (bounds must stay finite).
_HUGE = np.float32(1e30)


class BackgroundRanking:
    """Each image's hardest candidates by :func:`background_loss`, computing few losses.

    ``logits`` (B, N, C) numpy (a :func:`samplers._arrays.host_view` of a CPU
    NDArray works), class 0 background. The constructor makes one pass: it
    sets ``finite`` (B, N) bool, and bounds each row's ``S / exp(l_0)``, ``S =
    sum_{c>=1} exp(l_c)``, with an exponential read off the float bits,
    exact to a factor of 1.0625. A row outside that exponential's range
    (a logit beyond about +-87, or not finite) gets its exact loss instead.
    :meth:`hardest` computes the exact loss only of the candidates whose
    bound can reach the k-th largest, and ranks those: the choice is the
    one :func:`background_loss` ranked in full gives, ties included.
    float64 logits are computed exactly throughout.
    """

    def __init__(self, logits, block_rows=8192, threads=None):
        logits = np.asarray(logits)
        if logits.ndim != 3:
            raise ValueError('logits must be (B, N, C), got shape {}'.format(logits.shape))
        self._dtype = _dtype(logits)
        self._shape = logits.shape[:2]
        self._flat = logits.reshape(-1, logits.shape[-1])
        total = self._flat.shape[0]
        self._block_rows = block_rows
        self._estimate = np.empty(total, np.float32)  # meaningful where not _pinned
        self._pinned = np.zeros(total, bool)  # no estimate: the exact loss is in _loss
        self._loss = np.empty(total, self._dtype)
        self._finite = np.ones(total, bool)
        _shared(self._first_pass, total, block_rows, threads)
        self._some_pinned = bool(self._pinned.any())
        self.finite = self._finite.reshape(self._shape)

    def _first_pass(self, part):
        with np.errstate(over='ignore', invalid='ignore', divide='ignore'):  # per thread
            if self._dtype == np.float32:
                self._estimate_rows(part)
            else:
                self._pin(part, self._flat[part])

    def _pin(self, at, rows):
        """Exact losses of ``rows``, the flat rows ``at`` (a slice or positions)."""
        loss, finite = self._loss[at], self._finite[at]  # copies for positions
        _exact_rows(rows, loss, finite, self._dtype, self._block_rows)
        self._loss[at], self._finite[at], self._pinned[at] = loss, finite, True
        self._estimate[at] = 0  # unused, but defined

    def _estimate_rows(self, part):
        rows = self._flat[part]
        size = min(self._block_rows, rows.shape[0])
        scaled = np.empty((size, rows.shape[1]), np.float32)
        bits = np.empty((size, rows.shape[1]), np.int32)
        for start in range(0, rows.shape[0], self._block_rows):
            block = rows[start:start + self._block_rows]
            n = block.shape[0]
            at = slice(part.start + start, part.start + start + n)
            np.multiply(block, _SCALE, out=scaled[:n], dtype=np.float32)
            np.add(scaled[:n], _ONE, out=scaled[:n])
            if not scaled[:n].max() < _END:  # NaN too; checked before the (then safe) cast
                self._pin(at, block)
                continue
            np.copyto(bits[:n], scaled[:n], casting='unsafe')
            if bits[:n].min() < _LOWEST_BITS:  # a logit below about -87.3
                self._pin(at, block)
                continue
            exp = bits[:n].view(np.float32)
            estimate = self._estimate[at]
            np.divide(np.einsum('ij->i', exp[:, 1:]), exp[:, 0], out=estimate)
            if not estimate.max() < _HUGE:
                huge = np.flatnonzero(~(estimate < _HUGE))
                self._pin(huge + at.start, block[huge])

    def hardest(self, candidate, k):
        """float32 0/1 (B, N): per image the ``floor(min(k, count))`` candidates with the
        largest background loss, ties to the lower index.

        ``candidate`` (B, N) 0/1, taken only where ``finite``; ``k`` (B,) or (B, 1)
        counts (non-negative floats; below 1 keeps none).
        """
        cand = (np.asarray(candidate) > 0) & self.finite
        num = self._shape[1]
        counts = np.count_nonzero(cand, axis=1)
        take = np.floor(np.minimum(np.asarray(k, np.float64).reshape(-1), counts)).astype(
            np.int64)
        out = np.zeros(self._shape, np.float32)
        full = np.flatnonzero((take >= counts) & (take > 0))
        out[full] = cand[full]
        rows = np.flatnonzero((take > 0) & (take < counts))
        if not rows.size:
            return out
        estimate = self._estimate.reshape(self._shape)
        pinned = self._pinned.reshape(self._shape)
        stay = [_survivors(estimate[r], cand[r], take[r], pinned[r] if self._some_pinned
                           else None) for r in rows.tolist()]
        row = np.repeat(rows, [s.size for s in stay])
        col = np.concatenate(stay)
        # Of each row's survivors the take with the largest exact loss; lexsort is stable,
        # so of equal losses the lower index comes first.
        order = np.lexsort((-self._exact(row * num + col), row))
        row, col = row[order], col[order]
        first = np.searchsorted(row, row)  # each survivor's row's first place
        keep = np.arange(row.size) - first < take[row]
        out[row[keep], col[keep]] = 1
        return out

    def _exact(self, positions):
        """The exact loss of the flat rows at ``positions``: computed here, or the first
        pass's for pinned rows."""
        fresh = ~self._pinned[positions] if self._some_pinned else None
        rows = positions if fresh is None else positions[fresh]
        computed = np.empty(rows.size, self._dtype)
        _exact_rows(self._flat[rows], computed, np.ones(rows.size, bool), self._dtype,
                    self._block_rows)
        if fresh is None:
            return computed
        loss = self._loss[positions]  # a copy, right where pinned
        loss[fresh] = computed
        return loss


def _survivors(estimate, cand, take, pinned):
    """Positions of one row's candidates that may be among its ``take`` (< their count)
    largest losses, in order: every candidate that has no estimate (``pinned``, or None
    for none), and those whose estimate reaches t / _SLACK**2, t the take-th largest
    estimate among the candidates that have one. A candidate estimated below that has an
    exact ratio below that of each of those take (with room for the rounding of either
    pass), so it cannot be chosen."""
    if pinned is not None and pinned.any():
        estimated = cand & ~pinned
        if np.count_nonzero(estimated) < take:
            return np.flatnonzero(cand)
        stay = _survivors(estimate, estimated, take, None)
        return np.union1d(stay, np.flatnonzero(cand & pinned))
    if estimate.size > 8 * take + 256:
        # First the candidates at or above a cut-off: the value about 2 take + 64 of all
        # the estimates reach (taken from every 8th), over _SLACK**2. That is usually
        # enough to hold the take-th largest and every survivor.
        sample = estimate[::8]
        rank = sample.size - 1 - min((2 * take + 64) // 8, sample.size - 1)
        low = np.partition(sample, rank)[rank] / _SLACK / _SLACK
        few = np.flatnonzero(estimate >= low)
        few = few[cand[few]]
        if few.size >= take:
            values = estimate[few]
            cut = np.partition(values, few.size - take)[few.size - take] / _SLACK / _SLACK
            if cut >= low:
                return few[values >= cut]
    every = np.flatnonzero(cand)
    values = estimate[every]
    cut = np.partition(values, every.size - take)[every.size - take] / _SLACK / _SLACK
    return every[values >= cut]
