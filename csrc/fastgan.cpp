// The op surface of fastgan: every schema, declared once.
//
// Kernels register themselves per backend (csrc/cpu/<op>.cpp for CPU,
// csrc/cuda/<op>.cu for CUDA); fake (meta) implementations, autograd and the
// Python API live in the `fastgan` package.

#include <torch/library.h>

TORCH_LIBRARY(fastgan, m) {
  // Clamps every element of every tensor to [-clip_value, clip_value] in place
  // and returns, as a 0-dim int64 tensor on the tensors' device, how many
  // elements changed. All tensors must share one device; dtypes may mix.
  m.def("clip_(Tensor(a!)[] tensors, float clip_value) -> Tensor");

  // A dropout mask shaped and typed like `like` (contiguous): each element is
  // 1 / (1 - p) with probability 1 - p and 0 otherwise, independently, from a
  // counter-based generator keyed by `seed` (the same mask for the same seed
  // on any number of threads). Not differentiable: dropout is x * mask.
  m.def("dropout_mask(Tensor like, float p, int seed) -> Tensor");

  // Gradient penalty on gradients of shape (B, ...): returns the penalty
  // (1/B) sum_i phi(||g_i||), phi(n) = (n - center)^2 (or max(0, n -
  // center)^2 when one_sided), and the per-sample norms (B,), both in float32
  // for float16 / bfloat16 gradients.
  m.def(
      "penalty_from_gradients(Tensor grads, float center, bool one_sided) "
      "-> (Tensor, Tensor)");
  // d(grad_penalty * penalty)/d(grads), given the norms the forward returned.
  m.def(
      "penalty_from_gradients_backward(Tensor grad_penalty, Tensor grads, "
      "Tensor norms, float center, bool one_sided) -> Tensor");
  // WGAN-GP's interpolates: out_i = eps_i * real_i + (1 - eps_i) * fake_i,
  // one weight per sample (eps of shape (B,)), in one pass.
  m.def("interpolate(Tensor real, Tensor fake, Tensor eps) -> Tensor");

  // A WGAN-GP critic evaluation of an MLP critic (Linear layers, leaky relu
  // with slope alphas[l] after each but the last, one output) in one node:
  // returns D(real) (R,), D(fake) (F,) and the penalty mean_i phi(||grad_x
  // D(x_hat_i)||) of penalty_from_gradients (0 when x_hat has no rows);
  // differentiable once with respect to the weights and biases. With
  // sn_state, layer l uses weights[l] / sigma as spectral_norm_scale(weights[l],
  // sn_state, sn_indices[l], sn_offsets[l], 0) does (csrc/mlp_critic.cpp).
  m.def(
      "mlp_critic_penalty(Tensor real, Tensor fake, Tensor x_hat, Tensor[] weights, "
      "Tensor[] biases, float[] alphas, float center, bool one_sided, Tensor? sn_state=None, "
      "int[] sn_indices=[], int[] sn_offsets=[]) -> (Tensor, Tensor, Tensor)");
  // The same critic's scores D(x) (N,) alone, differentiable once with
  // respect to x and (when they require it) the weights and biases: a
  // generator step's evaluation of the critic in one node.
  m.def(
      "mlp_critic_scores(Tensor x, Tensor[] weights, Tensor[] biases, float[] alphas, "
      "Tensor? sn_state=None, int[] sn_indices=[], int[] sn_offsets=[]) -> Tensor");

  // Fused bias and activation: gain * act(x + bias), the bias (C,) broadcast
  // along `dim`. act: linear, relu, lrelu, tanh, sigmoid, elu, selu,
  // softplus, swish; alpha is lrelu's negative slope and elu's saturation.
  m.def(
      "bias_act(Tensor x, Tensor? bias, str act, float alpha, float gain, int dim) "
      "-> Tensor");
  // grad * gain * act^(order)(x + bias), order 1 to 3: the backward of
  // bias_act (order 1) and of its own backward (order 2, 3). Both ops have
  // autograd kernels (csrc/autograd.cpp).
  m.def(
      "bias_act_grad(Tensor grad, Tensor x, Tensor? bias, str act, float alpha, "
      "float gain, int dim, int order) -> Tensor");

  // Convolution of images with one channel (csrc/cpu/conv_single_channel.cpp):
  // x (B, 1, H, W) with weight (O, 1, kh, kw), zero padding, no dilation, one
  // group -> (B, O, Ho, Wo), as conv2d without bias; and its input gradient
  // (B, O, Ho, Wo) -> (B, 1, H, W) for an input of input_size (H, W), which is
  // the transposed convolution with one output channel. Both are linear in
  // both arguments; autograd (fastgan/nn/conv.py) differentiates each into
  // the other and torch's weight gradient, to any order.
  m.def("conv2d_single_channel(Tensor input, Tensor weight, int[2] stride, int[2] padding) -> Tensor");
  m.def(
      "conv2d_single_channel_input_grad(Tensor grad, Tensor weight, int[2] stride, int[2] padding, "
      "int[2] input_size) -> Tensor");

  // Exact 1-D optimal transport for B problems: u_values (B, n), v_values
  // (B, m), weights of the same shapes summing to one mass per problem (or
  // both None: uniform). Returns the cost sum over segments of the merged
  // quantile functions of |u - v|^p (W_p^p) of shape (B,) and, when
  // with_grad, its gradients with respect to u, v and (given) the weights;
  // empty tensors for those not computed.
  m.def(
      "wasserstein_1d(Tensor u_values, Tensor v_values, Tensor? u_weights, "
      "Tensor? v_weights, float p, bool with_grad) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Exact minimum-cost assignment of B problems, cost (B, n, m) with n <= m:
  // the column of every row (B, n) int64, and float64 duals u (B, n), v (B,
  // m), feasible (u_i + v_j <= C_ij) and tight on the assignment.
  m.def("linear_sum_assignment(Tensor cost) -> (Tensor, Tensor, Tensor)");

  // Exact optimal transport with general weights for B problems: weights a
  // (B, n) and b (B, m), non-negative with one mass per problem (b is scaled
  // to a's mass), cost M (B, n, m), finite; float32 or float64. Network
  // simplex in float64, at most max_iter pivots per problem (<= 0: no cap).
  // Returns the plan (B, n, m) in M's dtype, float64 duals u (B, n) and v
  // (B, m) (u_i + v_j <= M_ij, tight on the plan, centred so that
  // sum a u = sum b v), the float64 cost <plan, M> (B,) and an int32 status
  // (B,) with POT's codes: 1 optimal, 0 infeasible, 3 max_iter reached.
  m.def(
      "emd(Tensor a, Tensor b, Tensor M, int max_iter) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Entropic OT, log domain (csrc/cpu/sinkhorn.cpp). POT's sinkhorn_log on B
  // problems: a (B, n), b (B, m), cost M (B, n, m); returns POT's log
  // scalings log_u (B, n), log_v (B, m) (plan = exp(log_u_i + log_v_j -
  // M_ij / reg)), the cost <plan, M> (B,), the iteration count (B,) int64,
  // the last column-marginal error (B,) and whether it fell below tol (B,).
  m.def(
      "sinkhorn_log(Tensor a, Tensor b, Tensor M, float reg, int max_iter, float tol) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The streaming softmin over point clouds x (B, n, d), y (B, m, d):
  // out[b, i] = -eps log sum_j exp(h[b, j] - |x_i - y_j|^p / (p eps)), p = 1, 2.
  m.def("sinkhorn_softmin(Tensor x, Tensor y, Tensor h, float eps, int p) -> Tensor");
  // GeomLoss's symmetric Sinkhorn on point clouds with the eps schedule
  // eps_list (then, with tol >= 0, more iterations at the last eps until
  // the potentials move by at most tol, up to max_iter). Returns the cost
  // (B,) (debiased: OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2), the potentials
  // f (2, B, n), g (2, B, m), f_aa, g_bb (same, or empty without debias):
  // [0] the returned potentials, [1] the state the last step started from,
  // and the iteration count (B,) int64. With rho (unbalanced OT, a KL
  // penalty of strength rho on the marginals) every softmin is damped by
  // rho / (rho + eps) and the cost is GeomLoss's unbalanced one:
  // (rho + eps / 2) <a, exp(-f_aa / rho) - exp(-f / rho)> + (same for b, g),
  // or (rho + eps / 2) <a, 1 - exp(-f / rho)> + ... without debias.
  m.def(
      "sinkhorn_points(Tensor x, Tensor y, Tensor a, Tensor b, int p, float[] eps_list, "
      "bool debias, float tol, int max_iter, float? rho=None) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // d cost / d(x, y) of sinkhorn_points times grad_cost (B,), from the
  // potentials it returned (envelope theorem; eps = the last eps).
  m.def(
      "sinkhorn_points_backward(Tensor grad_cost, Tensor x, Tensor y, Tensor a, Tensor b, "
      "Tensor f, Tensor g, Tensor f_aa, Tensor g_bb, int p, float eps, float? rho=None) "
      "-> (Tensor, Tensor)");

  // Spectral normalisation (SN-GAN) of many layers at once. Runs n_iter
  // power-iteration steps, u <- normalize(W v), v <- normalize(W^T u), for
  // every layer's W_mat = weights[i].movedim(dims[i], 0).flatten(1), updating
  // us[i] and vs[i] in place, and returns a float64 state: every layer's
  // sigma = u^T W v first, then each layer's u and v as used (layout in
  // csrc/common/spectral_norm.h). n_iter = 0 computes sigma without updating.
  m.def(
      "spectral_norm_power_iteration(Tensor[] weights, Tensor(a!)[] us, Tensor(b!)[] vs, "
      "int[] dims, int n_iter, float eps) -> Tensor");
  // weight / sigma for the layer at `index` of a state (its u and v at
  // `offset`). Differentiable as torch's parametrization is, sigma = u^T W v
  // with u and v constant; its autograd kernel is in csrc/autograd.cpp.
  m.def("spectral_norm_scale(Tensor weight, Tensor state, int index, int offset, int dim) -> Tensor");
  // grad / sigma - (<grad, weight> / sigma^2) u v^T: the backward of spectral_norm_scale.
  m.def(
      "spectral_norm_scale_backward(Tensor grad, Tensor weight, Tensor state, int index, "
      "int offset, int dim) -> Tensor");
  // input @ (weight / sigma)^T + bias for a 2-D weight (out, in) normalised
  // along dim 0, without forming weight / sigma: (input @ weight^T) / sigma +
  // bias, sigma from a power-iteration state as in spectral_norm_scale.
  // Differentiable to any order; its kernels (ATen ops, any device) and
  // autograd are in csrc/autograd.cpp.
  m.def(
      "spectral_norm_linear(Tensor input, Tensor weight, Tensor? bias, Tensor state, int index, "
      "int offset) -> Tensor");
}

// Ops that are not differentiable skip autograd entirely. clip_ updates
// parameters in place like `p.data.clamp_` (no history, no version bump); the
// fallthrough also spares every call the autograd fallback's per-tensor
// bookkeeping (9 us of 14 for an 8-tensor critic, measured on the CPU).
TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("clip_", torch::CppFunction::makeFallthrough());
  // A mask is a constant of the graph, like torch's Bernoulli noise.
  m.impl("dropout_mask", torch::CppFunction::makeFallthrough());
  // The power iteration is not differentiable (torch's runs under no_grad)
  // and updates the u and v buffers like torch's does, without history.
  m.impl("spectral_norm_power_iteration", torch::CppFunction::makeFallthrough());
}
