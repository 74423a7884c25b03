// fastgan::mlp_critic_penalty: a whole WGAN-GP critic evaluation of an MLP
// critic in one autograd node.
//
// The critic: layers l = 0 .. L-1, a_l = h_{l-1} W_l^T + b_l (h_{-1} = x),
// h_l = lrelu(a_l; alpha_l) for l < L-1, score = a_{L-1} (one output). The
// activations are piecewise linear (leaky relu; relu is alpha = 0, linear is
// alpha = 1), so the slopes s_l = lrelu'(a_l) are constants of the graph and
// the input gradient is linear in the weights along a fixed path:
//   t_{L-1} = 1,  t_l = (t_{l+1} W_{l+1}) * s_l,  grad_x D = t_0 W_0.
// The op returns D(real), D(fake) and P = mean_i phi(||grad_x D(x_hat_i)||)
// (fastgan::penalty_from_gradients), and its backward returns every weight's
// and bias's gradient of  dL/dD(real) . D(real) + dL/dD(fake) . D(fake) + dL/dP . P:
//   * the scores: the usual backward of the MLP over the real and fake rows;
//   * the penalty (no bias depends on it): with q = dP/d(grad_x D),
//       dW_0 += t_0^T q,  p_0 = q W_0^T,  and for l = 0 .. L-2:
//       r_l = p_l * s_l,  dW_{l+1} += t_{l+1}^T r_l,  p_{l+1} = r_l W_{l+1}^T.
// That is what autograd computes for autograd.grad(create_graph=True) and
// loss.backward() through nn.Linear and nn.LeakyReLU, less its work: no
// graph of the gradient, no second derivative of the activations (zero), no
// walk back through the interpolates' forward pass, and one node instead of
// hundreds. Real, fake and interpolate rows share each layer's matrix product.
//
// With a spectral-norm state (fastgan::spectral_norm_power_iteration of the
// layers, in order), every layer uses W_l / sigma_l (spectral_norm_scale) and
// its gradient goes back through spectral_norm_scale_backward, as autograd
// would send it through torch's parametrization. With no interpolate rows
// there is no penalty (0) and only the scores' backward runs.
//
// fastgan::mlp_critic_scores is the same critic's scores alone, D(x), in one
// node whose backward gives the gradient with respect to x (a generator step:
// delta_{L-1} = dL/dD, delta_l = (delta_{l+1} W_{l+1}) * s_l,
// dL/dx = delta_0 W_0) and, when they require it, the parameters'
// (dW_l = delta_l^T h_{l-1}). It replaces the 2 (L - 1) + 1 nodes of the
// Linear and activation modules and their backward graph.
//
// ATen ops throughout, so the kernels serve every device; first derivatives
// only (create_graph through them is refused).

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/leaky_relu.h>
#include <ATen/ops/leaky_relu_backward.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/strides.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <initializer_list>
#include <tuple>
#include <utility>
#include <vector>

#include "common/dtypes.h"
#include "common/op_calls.h"
#include "common/spectral_norm.h"

namespace fastgan {
namespace {

constexpr const char* kOp = "fastgan::mlp_critic_penalty";
constexpr const char* kScoresOp = "fastgan::mlp_critic_scores";

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The checks of both ops (named after `op`): `inputs` are the (N, d) sample tensors.
void check_args(
    const char* op, std::initializer_list<std::pair<const char*, const at::Tensor*>> inputs,
    at::TensorList weights, at::TensorList biases, c10::ArrayRef<double> alphas,
    const std::optional<at::Tensor>& sn_state, c10::ArrayRef<int64_t> sn_indices,
    c10::ArrayRef<int64_t> sn_offsets) {
  const int64_t layers = static_cast<int64_t>(weights.size());
  TORCH_CHECK_VALUE(layers >= 1, op, ": `weights` is empty");
  TORCH_CHECK_VALUE(
      static_cast<int64_t>(biases.size()) == layers, op, ": `biases` must have one entry per layer (",
      layers, "), got ", biases.size());
  TORCH_CHECK_VALUE(
      static_cast<int64_t>(alphas.size()) == layers - 1, op,
      ": `alphas` must have one slope per hidden layer (", layers - 1, "), got ", alphas.size());
  const auto dtype = weights[0].scalar_type();
  const auto device = weights[0].device();
  TORCH_CHECK_TYPE(
      dtype == at::kFloat || dtype == at::kDouble, op,
      ": the weights must be float32 or float64, got ", dtype);
  TORCH_CHECK_VALUE(
      weights[0].dim() == 2, op, ": weights[0] must have shape (out, in), got ", weights[0].sizes());
  for (const auto& [name, t] : inputs) {
    TORCH_CHECK_VALUE(
        t->dim() == 2 && t->size(1) == weights[0].size(1), op, ": `", name,
        "` must have shape (N, ", weights[0].size(1), "), got ", t->sizes());
    TORCH_CHECK_TYPE(
        t->scalar_type() == dtype, op, ": `", name, "` is ", t->scalar_type(),
        " but the weights are ", dtype);
    TORCH_CHECK_VALUE(
        t->device() == device, op, ": `", name, "` is on ", t->device(),
        " but the weights are on ", device);
  }
  if (sn_state.has_value() && sn_state->defined()) {
    TORCH_CHECK_VALUE(
        static_cast<int64_t>(sn_indices.size()) == layers &&
            static_cast<int64_t>(sn_offsets.size()) == layers,
        op, ": `sn_indices` and `sn_offsets` must have one entry per layer (", layers, "), got ",
        sn_indices.size(), " and ", sn_offsets.size());
  }
  int64_t in = weights[0].size(1);
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor& w = weights[l];
    const at::Tensor& b = biases[l];
    TORCH_CHECK_VALUE(
        w.dim() == 2 && w.size(1) == in, op, ": weights[", l, "] must have shape (out, ", in,
        "), got ", w.sizes());
    TORCH_CHECK_TYPE(
        w.scalar_type() == dtype && w.device() == device && b.scalar_type() == dtype &&
            b.device() == device,
        op, ": weights[", l, "] and biases[", l, "] must be ", dtype, " on ", device);
    TORCH_CHECK_VALUE(
        b.dim() == 1 && b.size(0) == w.size(0), op, ": biases[", l, "] must have shape (",
        w.size(0), ",), got ", b.sizes());
    if (sn_state.has_value() && sn_state->defined()) {
      spectral_norm::check_scale(
          w, *sn_state, sn_indices[l], sn_offsets[l], 0, op,
          {{"weights", l}, {"sn_state"}, {"sn_indices", l}, {"sn_offsets", l}});
    }
    in = w.size(0);
  }
  TORCH_CHECK_VALUE(
      weights[layers - 1].size(0) == 1, op, ": the last layer must have one output, got ",
      weights[layers - 1].size(0));
}

std::tuple<at::Tensor, at::Tensor> call_penalty(
    const at::Tensor& grads, double center, bool one_sided) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastgan::penalty_from_gradients", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, bool)>();
  return op.call(grads, center, one_sided);
}

at::Tensor call_penalty_backward(
    const at::Tensor& grad_penalty, const at::Tensor& grads, const at::Tensor& norms,
    double center, bool one_sided) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastgan::penalty_from_gradients_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, bool)>();
  return op.call(grad_penalty, grads, norms, center, one_sided);
}

// The weights the critic uses: W_l, or W_l / sigma_l under spectral norm.
std::vector<at::Tensor> used_weights(
    at::TensorList weights, const std::optional<at::Tensor>& sn_state,
    c10::ArrayRef<int64_t> sn_indices, c10::ArrayRef<int64_t> sn_offsets) {
  const bool normalized = sn_state.has_value() && sn_state->defined();
  std::vector<at::Tensor> w;
  w.reserve(weights.size());
  for (size_t l = 0; l < weights.size(); ++l) {
    w.push_back(
        normalized ? call_spectral_norm_scale(weights[l], *sn_state, sn_indices[l], sn_offsets[l], 0)
                   : weights[l]);
  }
  return w;
}

// The hidden layers over every row of `in`: appends a_l and h_l, returns the last h.
// With a slope alpha_l >= 0, h_l > 0 exactly where a_l > 0 (NaN in both or
// neither), so h_l stands for a_l in every slope test: the activation runs in
// place and a_l is h_l (one buffer a layer; fresh buffers cost page faults).
at::Tensor hidden_forward(
    at::Tensor in, const std::vector<at::Tensor>& w, at::TensorList biases,
    c10::ArrayRef<double> alphas, std::vector<at::Tensor>& a, std::vector<at::Tensor>& h) {
  for (size_t l = 0; l + 1 < w.size(); ++l) {
    at::Tensor pre = at::addmm(biases[l], in, w[l].t());
    a.push_back(pre);
    h.push_back(alphas[l] >= 0 ? at::leaky_relu_(pre, alphas[l]) : at::leaky_relu(pre, alphas[l]));
    in = h.back();
  }
  return in;
}

// grad * lrelu'(pre; alpha), written over `grad` (a product of the op's own).
at::Tensor times_slope_(at::Tensor grad, const at::Tensor& pre, double alpha) {
  return at::leaky_relu_backward_out(grad, grad, pre, alpha, false);
}

// The backward of the scores of rows [0, n) of a forward over x (saved a_l, h_l):
// from delta = dL/dD (n, 1), each layer's weight and bias gradient (when
// `params`) into dw, db, and the gradient with respect to x (n, d) when `input`.
at::Tensor scores_backward(
    at::Tensor delta, const at::Tensor& x, const std::vector<at::Tensor>& w,
    const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& h,
    c10::ArrayRef<double> alphas, int64_t n, bool params, bool input, std::vector<at::Tensor>& dw,
    std::vector<at::Tensor>& db) {
  for (int64_t l = static_cast<int64_t>(w.size()) - 1; l >= 0; --l) {
    if (params) {
      const at::Tensor in = l == 0 ? x.narrow(0, 0, n) : h[l - 1].narrow(0, 0, n);
      dw[l] = at::mm(delta.t(), in);
      db[l] = at::sum(delta, 0);
    }
    if (l > 0) {
      delta = times_slope_(at::mm(delta, w[l]), a[l - 1].narrow(0, 0, n), alphas[l - 1]);
    } else if (input) {
      return at::mm(delta, w[0]);
    }
  }
  return at::Tensor();
}

// Each parameter's strides (weights, then biases), so that its gradient comes
// back in its layout (torch's gradient layout contract, which DDP's buckets
// rely on). A parameter that is not dense gets contiguous gradients.
std::vector<int64_t> parameter_strides(at::TensorList weights, at::TensorList biases) {
  std::vector<int64_t> strides;
  for (const at::TensorList& params : {weights, biases}) {
    for (const at::Tensor& p : params) {
      const c10::DimVector want = p.is_non_overlapping_and_dense()
          ? c10::DimVector(p.strides().begin(), p.strides().end())
          : c10::contiguous_strides(p.sizes());
      strides.insert(strides.end(), want.begin(), want.end());
    }
  }
  return strides;
}

// Saves what parameter_gradients needs: the strides and, under spectral norm,
// the original weights and the state (appended to `saved`).
void save_parameters(
    AutogradContext* ctx, std::vector<at::Tensor>& saved, at::TensorList weights,
    at::TensorList biases, const std::optional<at::Tensor>& sn_state,
    c10::ArrayRef<int64_t> sn_indices, c10::ArrayRef<int64_t> sn_offsets) {
  const bool normalized = sn_state.has_value() && sn_state->defined();
  if (normalized) {
    saved.insert(saved.end(), weights.begin(), weights.end());
    saved.push_back(*sn_state);
    ctx->saved_data["sn_indices"] = std::vector<int64_t>(sn_indices.begin(), sn_indices.end());
    ctx->saved_data["sn_offsets"] = std::vector<int64_t>(sn_offsets.begin(), sn_offsets.end());
  }
  ctx->saved_data["normalized"] = normalized;
  ctx->saved_data["strides"] = parameter_strides(weights, biases);
}

// The weights' and biases' gradients into out[first ..] (weights, then biases)
// where the inputs need them: d/dW of W / sigma(W) under spectral norm (as
// torch's parametrization differentiates it), each in its parameter's layout.
// `original` points at the saved original weights and state (save_parameters).
void parameter_gradients(
    AutogradContext* ctx, std::vector<at::Tensor>& dw, const std::vector<at::Tensor>& db,
    const at::Tensor* original, size_t first, variable_list& out) {
  const int64_t layers = static_cast<int64_t>(dw.size());
  if (ctx->saved_data["normalized"].toBool()) {
    const at::Tensor& state = original[layers];
    const auto indices = ctx->saved_data["sn_indices"].toIntVector();
    const auto offsets = ctx->saved_data["sn_offsets"].toIntVector();
    for (int64_t l = 0; l < layers; ++l) {
      if (dw[l].defined() && ctx->needs_input_grad(first + l)) {
        dw[l] = call_spectral_norm_scale_backward(
            dw[l], original[l], state, indices[l], offsets[l], 0);
      }
    }
  }
  // Weight l's strides are entries 2l, 2l + 1 of `strides`, bias l's entry 2 layers + l.
  const auto strides = ctx->saved_data["strides"].toIntVector();
  const auto like_param = [&](const at::Tensor& grad, size_t offset) {
    const c10::IntArrayRef want(strides.data() + offset, grad.dim());
    if (grad.strides() == want) {
      return grad;
    }
    return at::empty_strided(grad.sizes(), want, grad.options()).copy_(grad);
  };
  for (int64_t l = 0; l < layers; ++l) {
    if (ctx->needs_input_grad(first + l) && dw[l].defined()) {
      out[first + l] = like_param(dw[l], 2 * l);
    }
    if (ctx->needs_input_grad(first + layers + l) && db[l].defined()) {
      out[first + layers + l] = like_param(db[l], 2 * layers + l);
    }
  }
}

// The saved tensors both ops start with: x, the weights used, a_l, h_l.
struct SavedLayers {
  at::Tensor x;
  std::vector<at::Tensor> w, a, h;
  size_t next;  // the index of what follows them in `saved`
};

std::vector<at::Tensor> pack_layers(
    const at::Tensor& x, const std::vector<at::Tensor>& w, const std::vector<at::Tensor>& a,
    const std::vector<at::Tensor>& h) {
  std::vector<at::Tensor> saved{x};
  saved.insert(saved.end(), w.begin(), w.end());
  saved.insert(saved.end(), a.begin(), a.end());
  saved.insert(saved.end(), h.begin(), h.end());
  return saved;
}

SavedLayers unpack_layers(const variable_list& saved, int64_t layers) {
  SavedLayers s;
  size_t k = 0;
  s.x = saved[k++];
  s.w.assign(saved.begin() + k, saved.begin() + k + layers);
  k += layers;
  s.a.assign(saved.begin() + k, saved.begin() + k + layers - 1);
  k += layers - 1;
  s.h.assign(saved.begin() + k, saved.begin() + k + layers - 1);
  s.next = k + layers - 1;
  return s;
}

// Everything the forward computes; the backward needs all but the outputs.
struct Forward {
  at::Tensor scores_real, scores_fake, penalty;
  at::Tensor x;                   // [real; fake; x_hat], (N, d)
  std::vector<at::Tensor> w;      // the weights used: W_l, or W_l / sigma_l
  std::vector<at::Tensor> a, h;   // pre-activations and activations of the hidden layers, (N, out_l)
  std::vector<at::Tensor> t;      // d score / d a_l at the interpolates, (H, out_l), l = 0 .. L-1
  at::Tensor grads, norms;        // grad_x D(x_hat) (H, d) and its row norms
};

Forward forward_pass(
    const at::Tensor& real, const at::Tensor& fake, const at::Tensor& x_hat,
    at::TensorList weights, at::TensorList biases, c10::ArrayRef<double> alphas, double center,
    bool one_sided, const std::optional<at::Tensor>& sn_state, c10::ArrayRef<int64_t> sn_indices,
    c10::ArrayRef<int64_t> sn_offsets) {
  check_args(
      kOp, {{"real", &real}, {"fake", &fake}, {"x_hat", &x_hat}}, weights, biases, alphas,
      sn_state, sn_indices, sn_offsets);
  const int64_t layers = static_cast<int64_t>(weights.size());
  const int64_t n_real = real.size(0);
  const int64_t n_scored = n_real + fake.size(0);
  const int64_t n_hat = x_hat.size(0);
  Forward f;
  f.w = used_weights(weights, sn_state, sn_indices, sn_offsets);
  const auto& w = f.w;
  f.x = at::cat({real, fake, x_hat});
  // Hidden layers over all rows; the last only over the scored (real, fake) ones.
  const at::Tensor in = hidden_forward(f.x, w, biases, alphas, f.a, f.h);
  const at::Tensor scores =
      at::addmm(biases[layers - 1], in.narrow(0, 0, n_scored), w[layers - 1].t()).view({-1});
  // Separate tensors, not views of one: they leave the op as two outputs.
  f.scores_real = scores.narrow(0, 0, n_real).clone();
  f.scores_fake = scores.narrow(0, n_real, n_scored - n_real).clone();
  if (n_hat == 0) {  // no penalty
    f.penalty = at::zeros({}, weights[0].options());
    return f;
  }
  // The input gradient at the interpolates, from the score back.
  f.t.resize(layers);
  f.t[layers - 1] = at::ones({n_hat, 1}, weights[0].options());
  for (int64_t l = layers - 2; l >= 0; --l) {
    const at::Tensor slopes = f.a[l].narrow(0, n_scored, n_hat);
    f.t[l] = l == layers - 2
        ? at::leaky_relu_backward(w[l + 1].expand({n_hat, w[l + 1].size(1)}), slopes, alphas[l], false)
        : times_slope_(at::mm(f.t[l + 1], w[l + 1]), slopes, alphas[l]);
  }
  f.grads = at::mm(f.t[0], w[0]);
  std::tie(f.penalty, f.norms) = call_penalty(f.grads, center, one_sided);
  return f;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_critic_penalty(
    const at::Tensor& real, const at::Tensor& fake, const at::Tensor& x_hat,
    at::TensorList weights, at::TensorList biases, c10::ArrayRef<double> alphas, double center,
    bool one_sided, const std::optional<at::Tensor>& sn_state, c10::ArrayRef<int64_t> sn_indices,
    c10::ArrayRef<int64_t> sn_offsets) {
  Forward f = forward_pass(
      real, fake, x_hat, weights, biases, alphas, center, one_sided, sn_state, sn_indices,
      sn_offsets);
  return {f.scores_real, f.scores_fake, f.penalty};
}

void refuse_create_graph(const char* op) {
  TORCH_CHECK_NOT_IMPLEMENTED(
      !c10::GradMode::is_enabled(), op,
      ": derivatives of order 2 are not implemented; call backward without create_graph");
}

class MlpCriticPenaltyFunction : public torch::autograd::Function<MlpCriticPenaltyFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx, const at::Tensor& real, const at::Tensor& fake,
      const at::Tensor& x_hat, at::TensorList weights, at::TensorList biases,
      c10::ArrayRef<double> alphas, double center, bool one_sided,
      const std::optional<at::Tensor>& sn_state, c10::ArrayRef<int64_t> sn_indices,
      c10::ArrayRef<int64_t> sn_offsets) {
    ctx->set_materialize_grads(false);
    at::AutoDispatchBelowADInplaceOrView guard;
    Forward f = forward_pass(
        real, fake, x_hat, weights, biases, alphas, center, one_sided, sn_state, sn_indices,
        sn_offsets);
    const int64_t layers = static_cast<int64_t>(weights.size());
    const int64_t n_hat = x_hat.size(0);
    if (n_hat == 0) {  // placeholders: the penalty's tensors are not needed
      f.t.assign(layers, at::Tensor());
    }
    // Saved: x, the weights used, a, h, t, grads, norms, then (normalised) the
    // original weights and the state; counts from `layers`.
    std::vector<at::Tensor> saved = pack_layers(f.x, f.w, f.a, f.h);
    saved.insert(saved.end(), f.t.begin(), f.t.end());
    saved.push_back(f.grads);
    saved.push_back(f.norms);
    save_parameters(ctx, saved, weights, biases, sn_state, sn_indices, sn_offsets);
    ctx->save_for_backward(saved);
    ctx->saved_data["layers"] = layers;
    ctx->saved_data["n_real"] = real.size(0);
    ctx->saved_data["n_fake"] = fake.size(0);
    ctx->saved_data["alphas"] = std::vector<double>(alphas.begin(), alphas.end());
    ctx->saved_data["center"] = center;
    ctx->saved_data["one_sided"] = one_sided;
    return {f.scores_real, f.scores_fake, f.penalty};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // The gradient penalty's own double backward is inside the op.
    refuse_create_graph(kOp);
    const int64_t layers = ctx->saved_data["layers"].toInt();
    // Outputs: real, fake, x_hat, the weights, the biases, alphas, center,
    // one_sided, sn_state, sn_indices, sn_offsets.
    variable_list out(3 + 2 * layers + 6);
    const auto saved = ctx->get_saved_variables();
    const auto [x, w, a, h, next] = unpack_layers(saved, layers);
    size_t k = next;
    std::vector<at::Tensor> t(saved.begin() + k, saved.begin() + k + layers);
    k += layers;
    const at::Tensor grads = saved[k++];
    const at::Tensor norms = saved[k++];
    const int64_t n_real = ctx->saved_data["n_real"].toInt();
    const int64_t n_scored = n_real + ctx->saved_data["n_fake"].toInt();
    const int64_t n_hat = x.size(0) - n_scored;
    const auto alphas = ctx->saved_data["alphas"].toDoubleVector();
    const double center = ctx->saved_data["center"].toDouble();
    const bool one_sided = ctx->saved_data["one_sided"].toBool();

    std::vector<at::Tensor> dw(layers), db(layers);
    // The scores' part: the MLP's backward over the real and fake rows.
    const at::Tensor& g_real = grad_outputs[0];
    const at::Tensor& g_fake = grad_outputs[1];
    if ((g_real.defined() || g_fake.defined()) && n_scored > 0) {
      const auto opts = x.options();
      const at::Tensor delta = at::cat(
          {g_real.defined() ? g_real : at::zeros({n_real}, opts),
           g_fake.defined() ? g_fake : at::zeros({n_scored - n_real}, opts)})
                             .view({n_scored, 1});
      scores_backward(delta, x, w, a, h, alphas, n_scored, true, false, dw, db);
    }
    // The penalty's part.
    const at::Tensor& g_penalty = grad_outputs[2];
    if (g_penalty.defined() && n_hat > 0) {
      const at::Tensor q = call_penalty_backward(g_penalty, grads, norms, center, one_sided);
      const auto accumulate = [&](int64_t l, const at::Tensor& lhs, const at::Tensor& rhs) {
        // dw[l] += lhs^T rhs
        if (dw[l].defined()) {
          dw[l].addmm_(lhs.t(), rhs);
        } else {
          dw[l] = at::mm(lhs.t(), rhs);
        }
      };
      accumulate(0, t[0], q);
      at::Tensor p = at::mm(q, w[0].t());
      for (int64_t l = 0; l + 1 < layers; ++l) {
        const at::Tensor r = times_slope_(p, a[l].narrow(0, n_scored, n_hat), alphas[l]);
        if (l + 1 == layers - 1) {
          // t_{L-1} = 1: the last layer's gradient is the column sums.
          const at::Tensor col = at::sum(r, 0, /*keepdim=*/true);
          dw[l + 1] = dw[l + 1].defined() ? dw[l + 1].add_(col) : col;
        } else {
          accumulate(l + 1, t[l + 1], r);
          p = at::mm(r, w[l + 1].t());
        }
      }
      for (int64_t l = 0; l < layers; ++l) {
        if (!db[l].defined()) {
          db[l] = at::zeros({w[l].size(0)}, w[l].options());
        }
      }
    }
    parameter_gradients(ctx, dw, db, saved.data() + k, 3, out);
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_critic_penalty_autograd(
    const at::Tensor& real, const at::Tensor& fake, const at::Tensor& x_hat,
    at::TensorList weights, at::TensorList biases, c10::ArrayRef<double> alphas, double center,
    bool one_sided, const std::optional<at::Tensor>& sn_state, c10::ArrayRef<int64_t> sn_indices,
    c10::ArrayRef<int64_t> sn_offsets) {
  TORCH_CHECK_NOT_IMPLEMENTED(
      !real.requires_grad() && !fake.requires_grad() && !x_hat.requires_grad(), kOp,
      ": gradients with respect to `real`, `fake` or `x_hat` are not implemented; pass "
      "detached inputs");
  const variable_list out = MlpCriticPenaltyFunction::apply(
      real, fake, x_hat, weights, biases, alphas, center, one_sided, sn_state, sn_indices,
      sn_offsets);
  return {out[0], out[1], out[2]};
}

// ---------------------------------------------------------------- the scores alone

// D(x) (N,) and what its backward needs.
struct Scores {
  at::Tensor scores;
  std::vector<at::Tensor> w, a, h;
};

Scores scores_forward(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases,
    c10::ArrayRef<double> alphas, const std::optional<at::Tensor>& sn_state,
    c10::ArrayRef<int64_t> sn_indices, c10::ArrayRef<int64_t> sn_offsets) {
  check_args(kScoresOp, {{"x", &x}}, weights, biases, alphas, sn_state, sn_indices, sn_offsets);
  Scores f;
  f.w = used_weights(weights, sn_state, sn_indices, sn_offsets);
  const at::Tensor in = hidden_forward(x, f.w, biases, alphas, f.a, f.h);
  f.scores = at::addmm(biases[weights.size() - 1], in, f.w.back().t()).view({-1});
  return f;
}

at::Tensor mlp_critic_scores(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases,
    c10::ArrayRef<double> alphas, const std::optional<at::Tensor>& sn_state,
    c10::ArrayRef<int64_t> sn_indices, c10::ArrayRef<int64_t> sn_offsets) {
  return scores_forward(x, weights, biases, alphas, sn_state, sn_indices, sn_offsets).scores;
}

class MlpCriticScoresFunction : public torch::autograd::Function<MlpCriticScoresFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx, const at::Tensor& x, at::TensorList weights, at::TensorList biases,
      c10::ArrayRef<double> alphas, const std::optional<at::Tensor>& sn_state,
      c10::ArrayRef<int64_t> sn_indices, c10::ArrayRef<int64_t> sn_offsets) {
    ctx->set_materialize_grads(false);
    at::AutoDispatchBelowADInplaceOrView guard;
    Scores f = scores_forward(x, weights, biases, alphas, sn_state, sn_indices, sn_offsets);
    const int64_t layers = static_cast<int64_t>(weights.size());
    // Saved: x, the weights used, a, h, then (normalised) the original weights and the state.
    std::vector<at::Tensor> saved = pack_layers(x, f.w, f.a, f.h);
    save_parameters(ctx, saved, weights, biases, sn_state, sn_indices, sn_offsets);
    ctx->save_for_backward(saved);
    ctx->saved_data["layers"] = layers;
    ctx->saved_data["alphas"] = std::vector<double>(alphas.begin(), alphas.end());
    return {f.scores};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    refuse_create_graph(kScoresOp);
    const int64_t layers = ctx->saved_data["layers"].toInt();
    // Outputs: x, the weights, the biases, alphas, sn_state, sn_indices, sn_offsets.
    variable_list out(1 + 2 * layers + 4);
    const at::Tensor& grad = grad_outputs[0];
    bool params = false;
    for (int64_t i = 1; i <= 2 * layers; ++i) {
      params = params || ctx->needs_input_grad(i);
    }
    const bool input = ctx->needs_input_grad(0);
    if (!grad.defined() || (!params && !input)) {
      return out;
    }
    const auto saved = ctx->get_saved_variables();
    const auto [x, w, a, h, next] = unpack_layers(saved, layers);
    const auto alphas = ctx->saved_data["alphas"].toDoubleVector();
    std::vector<at::Tensor> dw(layers), db(layers);
    const int64_t n = x.size(0);
    out[0] = scores_backward(grad.reshape({n, 1}), x, w, a, h, alphas, n, params, input, dw, db);
    if (params) {
      parameter_gradients(ctx, dw, db, saved.data() + next, 1, out);
    }
    return out;
  }
};

at::Tensor mlp_critic_scores_autograd(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases,
    c10::ArrayRef<double> alphas, const std::optional<at::Tensor>& sn_state,
    c10::ArrayRef<int64_t> sn_indices, c10::ArrayRef<int64_t> sn_offsets) {
  return MlpCriticScoresFunction::apply(
      x, weights, biases, alphas, sn_state, sn_indices, sn_offsets)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("mlp_critic_penalty", &mlp_critic_penalty);
  m.impl("mlp_critic_scores", &mlp_critic_scores);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("mlp_critic_penalty", &mlp_critic_penalty);
  m.impl("mlp_critic_scores", &mlp_critic_scores);
}
#endif

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("mlp_critic_penalty", &mlp_critic_penalty_autograd);
  m.impl("mlp_critic_scores", &mlp_critic_scores_autograd);
}

}  // namespace fastgan
