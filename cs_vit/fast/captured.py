# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""A training step over fixed buffers, captured once as a CUDA graph and replayed.

On the GPU a ViT training step is about a thousand small kernel launches, and the
host issuing them, not the GPU, sets the pace. :class:`StaticTrainStep` runs
forward, loss, backward, clipping and AdamW over buffers that never move: the
batch is copied into fixed input buffers, the step's learning rate and Adam's
bias corrections into a small GPU array, and the loss, gradient norm and number
correct stay on the GPU until :meth:`StaticTrainStep.flush`. With fixed shapes
and addresses, the step can be recorded once as a CUDA graph
(``Stream.begin_capture()``) and replayed with a single launch per batch.

The first ``WARMUP_STEPS`` calls run the step eagerly on the step's own stream,
taking memory from a private pool; this compiles every kernel and fills the
pool with blocks of exactly the sizes the step uses, so the captured call
allocates nothing new from CUDA. The graph then owns those blocks for as long as
this object lives: only the recorded work allocates from its pool. On NumPy (and with
``capture=False``) every call runs the same step eagerly over the same buffers.
"""
from __future__ import annotations

import math
import warnings

import numpy

from cs_vit import backend
from cs_vit.backend import xp
from cs_vit.fast import cuda_kernels
from cs_vit.fast.flat import adamw_step_numbers
from cs_vit.layers import no_grad, softmax_cross_entropy
from cs_vit.optim import AdamW, clip_grad_norm
from cs_vit.optim.clipping import EPS
from cs_vit.solvers.static_step import make_static_forward, make_static_step

WARMUP_STEPS = 2
LOG_CAPACITY = 256  # steps whose loss and gradient norm wait on the GPU before a flush


class Replayed:
    """Work over fixed buffers that, on the GPU, is recorded as a CUDA graph and replayed.

    A subclass calls ``_run(prepare, body)``: ``prepare()`` fills the fixed buffers, then
    ``body()``, the work itself (GPU operations only, no waiting for the GPU, the same
    function every call), runs: eagerly on NumPy, with ``capture=False`` and for the first
    WARMUP_STEPS calls; recorded on the next; replayed from then on.
    """

    def __init__(self, capture=True):
        self.calls, self.graph = 0, None
        self.on_gpu = backend.name() == "cupy"
        self.capture = bool(capture) and self.on_gpu
        if self.on_gpu:
            cupy = backend._import_cupy()
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.pool = cupy.cuda.MemoryPool()  # the graph's own: only the body allocates from it

    @property
    def captured(self):
        """Whether the work now runs as a CUDA graph."""
        return self.graph is not None

    def _run(self, prepare, body):
        if not self.on_gpu:
            prepare()
            body()
        else:
            self._run_on_gpu(prepare, body)
        self.calls += 1

    def _run_on_gpu(self, prepare, body):
        cupy = backend._import_cupy()
        caller = cupy.cuda.get_current_stream()
        self.stream.wait_event(caller.record())  # the inputs were made on the caller's stream
        with self.stream:
            prepare()  # any temporary it makes comes from the usual pool, never the graph's
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            if self.graph is None and self.capture and self.calls >= WARMUP_STEPS:
                self.graph = _capture(self.stream, body)
                self.capture = self.graph is not None
            if self.graph is not None:
                self.graph.launch(self.stream)
            else:
                body()
        caller.wait_event(self.stream.record())  # what the caller does next sees this work


class StaticTrainStep(Replayed):
    """``step(images, labels, lr)``: one AdamW training step of ``model`` over fixed buffers.

    ``optimizer`` must be the fast tier's flat AdamW (``make_optimizer("adamw", model, ...)``
    with the fast tier on) and the model free of dropout in training: a graph replays
    the same random numbers. ``grad_clip`` None (or 0) measures the norm without clipping.
    :meth:`flush` brings the losses, gradient norms and number correct to the host.
    """

    def __init__(self, model, optimizer, batch_size, label_smoothing=0.0, grad_clip=None,
                 capture=True):
        check_capturable(model, optimizer)
        super().__init__(capture)
        self.model, self.optimizer = model, optimizer
        self.label_smoothing = label_smoothing
        # As in the solver: None or 0 measures the norm without clipping.
        self.max_norm = float(grad_clip) if grad_clip else math.inf
        dtype = optimizer.flat.values.dtype
        self.images = image_buffer(model, batch_size, dtype)
        self.labels = xp.zeros(batch_size, xp.int64)
        self.loss, self.grad_norm = xp.zeros((), dtype), xp.zeros((), dtype)
        self.correct_on_device = xp.zeros((), xp.int64)
        self.hyper = xp.zeros(3, dtype)  # step size, 1 - lr * weight_decay, sqrt(1 - beta2^t)
        self.loss_log, self.norm_log = xp.zeros(LOG_CAPACITY, dtype), xp.zeros(LOG_CAPACITY, dtype)
        self.log_count = xp.zeros(1, xp.int64)
        self.pending = 0
        self._losses, self._grad_norms, self._correct = [], [], 0

    def __call__(self, images, labels, lr):
        """Train on one batch (images (N, C, H, W), labels (N,)) with learning rate ``lr``."""
        if self.pending == LOG_CAPACITY:  # the GPU logs are full: move them to the host
            self._move_logs_to_host()
        if images.shape != self.images.shape or labels.shape != self.labels.shape:
            raise ValueError(f"this step was built for batches of images {self.images.shape} and "
                             f"labels {self.labels.shape}, got {images.shape} and {labels.shape}")
        self.optimizer.lr = lr
        self._run(lambda: self._prepare(images, labels), self._body)
        self.pending += 1

    def _prepare(self, images, labels):
        """Copy the batch in; on the GPU also the step's AdamW numbers (the CPU's optimizer
        step counts and reads its own)."""
        self.images[...] = images
        self.labels[...] = labels
        if self.on_gpu:
            self.optimizer.step_count += 1
            numbers = numpy.array(adamw_step_numbers(self.optimizer), dtype=self.hyper.dtype)
            self.hyper.set(numbers, stream=self.stream)

    def _body(self):
        """Forward, loss, backward, clipping, update: only GPU work, no host synchronisation."""
        logits = self.model.forward(self.images)
        dlogits = self._loss(logits)
        self.model.backward(dlogits, input_grad=False)
        if self.on_gpu:
            self._clip_and_update_on_gpu()
        else:
            self.grad_norm[...] = clip_grad_norm(self.optimizer.params, self.max_norm)
            self.optimizer.step()
            self.loss_log[self.pending] = self.loss
            self.norm_log[self.pending] = self.grad_norm

    def _loss(self, logits):
        """Write the batch's mean loss into ``loss``, add its number correct; return dlogits."""
        if not self.on_gpu:
            loss, dlogits = softmax_cross_entropy(logits, self.labels, self.label_smoothing)
            self.loss[...] = loss
            self.correct_on_device += (logits.argmax(axis=1) == self.labels).sum()
            return dlogits
        row_loss, row_correct, dlogits = cuda_kernels.cross_entropy(
            logits, self.labels, self.label_smoothing)
        xp.sum(row_loss, out=self.loss)
        self.loss /= row_loss.shape[0]
        self.correct_on_device += row_correct.sum()
        return dlogits

    def _clip_and_update_on_gpu(self):
        flat, o = self.optimizer.flat, self.optimizer
        cuda_kernels.l2_norm_into(flat.grads, self.grad_norm)
        if self.max_norm != math.inf:
            cuda_kernels.clip_by_norm(flat.grads, self.grad_norm, self.max_norm, EPS)
        cuda_kernels.adamw(flat.values, flat.grads, o.flat_state["exp_avg"],
                           o.flat_state["exp_avg_sq"], o.decay_mask, (o.beta1, o.beta2), o.eps,
                           self.hyper)
        cuda_kernels.record_step(self.loss, self.grad_norm, self.loss_log, self.norm_log,
                                 self.log_count)

    def _move_logs_to_host(self):
        """Append the GPU's pending logs to the host's and empty them (one wait for the GPU)."""
        if self.pending:
            self._losses += backend.to_numpy(self.loss_log[:self.pending]).tolist()
            self._grad_norms += backend.to_numpy(self.norm_log[:self.pending]).tolist()
            self._correct += int(self.correct_on_device)
            self.correct_on_device.fill(0)
            self.log_count.fill(0)
            self.pending = 0

    def flush(self):
        """(losses, grad_norms, correct) of the steps since the last flush, on the host.

        ``losses`` and ``grad_norms`` hold one float per step; ``correct`` is the number of
        images those steps classified right.
        """
        self._move_logs_to_host()
        taken = (self._losses, self._grad_norms, self._correct)
        self._losses, self._grad_norms, self._correct = [], [], 0
        return taken


def check_capturable(model, optimizer):
    """Raise ValueError unless ``optimizer`` is the flat AdamW and ``model`` drops nothing."""
    if not isinstance(optimizer, AdamW) or getattr(optimizer, "flat", None) is None:
        raise ValueError("a static training step needs the fast tier's flat AdamW, from "
                         "make_optimizer('adamw', model, ...) with the fast tier on; got "
                         f"{type(optimizer).__name__}")
    if model.config.dropout > 0 or model.config.attention_dropout > 0:
        raise ValueError("a static training step replays the same random numbers every step, "
                         "so it needs a model without dropout; got dropout="
                         f"{model.config.dropout}, attention_dropout="
                         f"{model.config.attention_dropout}")


def image_buffer(model, batch_size, dtype):
    """A zeroed (batch_size, C, H, W) buffer for the images ``model`` takes."""
    config = model.config
    return xp.zeros((batch_size, config.in_channels, config.image_size, config.image_size), dtype)


def make_captured_step(model, optimizer, batch_size, label_smoothing, grad_clip):
    """``make_static_step``: a StaticTrainStep on the GPU when the run allows one, else None."""
    if backend.name() != "cupy":
        return None
    try:
        return StaticTrainStep(model, optimizer, batch_size, label_smoothing, grad_clip)
    except ValueError:
        return None  # another optimizer, or dropout: the solver steps one by one


class StaticForward(Replayed):
    """``forward(images) -> logits``: ``model.forward`` under ``no_grad()`` over a fixed buffer.

    On the GPU the pass is captured as a CUDA graph after ``WARMUP_STEPS`` calls, as
    StaticTrainStep does, and replayed; the returned logits are the same array every
    call, overwritten by the next one. Inference in eval mode only.
    """

    def __init__(self, model, batch_size):
        super().__init__()
        self.model, self.logits = model, None
        self.images = image_buffer(model, batch_size, model.head.params["weight"].dtype)

    def __call__(self, images):
        if images.shape != self.images.shape:
            raise ValueError(f"this forward pass was built for images {self.images.shape}, "
                             f"got {images.shape}")
        self._run(lambda: self._copy_in(images), self._body)
        return self.logits

    def _copy_in(self, images):
        """Copy the batch into the fixed input buffer."""
        self.images[...] = images

    def _body(self):
        with no_grad():
            self.logits = self.model.forward(self.images)


def _capture(stream, body):
    """``body()`` recorded on ``stream`` as a CUDA graph, or None (with a warning)."""
    try:
        stream.begin_capture()
        try:
            body()
        finally:
            graph = stream.end_capture()
        return graph
    except Exception as err:  # any failure: go on, uncaptured
        warnings.warn(f"could not capture {body.__qualname__} as a CUDA graph ({err}); "
                      "going on without it", RuntimeWarning, stacklevel=3)
        return None


def make_captured_forward(model, batch_size):
    """``make_static_forward``: a StaticForward on the GPU, else None."""
    return StaticForward(model, batch_size) if backend.name() == "cupy" else None


REPLACEMENTS = {make_static_step: make_captured_step, make_static_forward: make_captured_forward}
