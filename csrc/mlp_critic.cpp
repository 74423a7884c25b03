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
// ATen ops throughout, so the kernel serves every device; first derivatives
// only (create_graph through it is refused).

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/cat.h>
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

#include <tuple>
#include <vector>

#include "common/dtypes.h"
#include "common/op_calls.h"
#include "common/spectral_norm.h"

namespace fastgan {
namespace {

constexpr const char* kOp = "fastgan::mlp_critic_penalty";

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_args(
    const at::Tensor& real, const at::Tensor& fake, const at::Tensor& x_hat,
    at::TensorList weights, at::TensorList biases, c10::ArrayRef<double> alphas,
    const std::optional<at::Tensor>& sn_state, c10::ArrayRef<int64_t> sn_indices,
    c10::ArrayRef<int64_t> sn_offsets) {
  const int64_t layers = static_cast<int64_t>(weights.size());
  TORCH_CHECK_VALUE(layers >= 1, kOp, ": `weights` is empty");
  TORCH_CHECK_VALUE(
      static_cast<int64_t>(biases.size()) == layers, kOp, ": `biases` must have one entry per layer (",
      layers, "), got ", biases.size());
  TORCH_CHECK_VALUE(
      static_cast<int64_t>(alphas.size()) == layers - 1, kOp,
      ": `alphas` must have one slope per hidden layer (", layers - 1, "), got ", alphas.size());
  const auto dtype = weights[0].scalar_type();
  const auto device = weights[0].device();
  TORCH_CHECK_TYPE(
      dtype == at::kFloat || dtype == at::kDouble, kOp,
      ": the weights must be float32 or float64, got ", dtype);
  TORCH_CHECK_VALUE(
      weights[0].dim() == 2, kOp, ": weights[0] must have shape (out, in), got ", weights[0].sizes());
  for (const auto& [name, t] :
       {std::pair{"real", &real}, std::pair{"fake", &fake}, std::pair{"x_hat", &x_hat}}) {
    TORCH_CHECK_VALUE(
        t->dim() == 2 && t->size(1) == weights[0].size(1), kOp, ": `", name,
        "` must have shape (N, ", weights[0].size(1), "), got ", t->sizes());
    TORCH_CHECK_TYPE(
        t->scalar_type() == dtype, kOp, ": `", name, "` is ", t->scalar_type(),
        " but the weights are ", dtype);
    TORCH_CHECK_VALUE(
        t->device() == device, kOp, ": `", name, "` is on ", t->device(),
        " but the weights are on ", device);
  }
  if (sn_state.has_value() && sn_state->defined()) {
    TORCH_CHECK_VALUE(
        static_cast<int64_t>(sn_indices.size()) == layers &&
            static_cast<int64_t>(sn_offsets.size()) == layers,
        kOp, ": `sn_indices` and `sn_offsets` must have one entry per layer (", layers, "), got ",
        sn_indices.size(), " and ", sn_offsets.size());
  }
  int64_t in = weights[0].size(1);
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor& w = weights[l];
    const at::Tensor& b = biases[l];
    TORCH_CHECK_VALUE(
        w.dim() == 2 && w.size(1) == in, kOp, ": weights[", l, "] must have shape (out, ", in,
        "), got ", w.sizes());
    TORCH_CHECK_TYPE(
        w.scalar_type() == dtype && w.device() == device && b.scalar_type() == dtype &&
            b.device() == device,
        kOp, ": weights[", l, "] and biases[", l, "] must be ", dtype, " on ", device);
    TORCH_CHECK_VALUE(
        b.dim() == 1 && b.size(0) == w.size(0), kOp, ": biases[", l, "] must have shape (",
        w.size(0), ",), got ", b.sizes());
    if (sn_state.has_value() && sn_state->defined()) {
      spectral_norm::check_scale(
          w, *sn_state, sn_indices[l], sn_offsets[l], 0, kOp,
          {{"weights", l}, {"sn_state"}, {"sn_indices", l}, {"sn_offsets", l}});
    }
    in = w.size(0);
  }
  TORCH_CHECK_VALUE(
      weights[layers - 1].size(0) == 1, kOp, ": the last layer must have one output, got ",
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
  check_args(real, fake, x_hat, weights, biases, alphas, sn_state, sn_indices, sn_offsets);
  const int64_t layers = static_cast<int64_t>(weights.size());
  const int64_t n_real = real.size(0);
  const int64_t n_scored = n_real + fake.size(0);
  const int64_t n_hat = x_hat.size(0);
  Forward f;
  const bool normalized = sn_state.has_value() && sn_state->defined();
  for (int64_t l = 0; l < layers; ++l) {
    f.w.push_back(
        normalized
            ? call_spectral_norm_scale(weights[l], *sn_state, sn_indices[l], sn_offsets[l], 0)
            : weights[l]);
  }
  const auto& w = f.w;
  f.x = at::cat({real, fake, x_hat});
  // Hidden layers over all rows; the last only over the scored (real, fake) ones.
  at::Tensor in = f.x;
  for (int64_t l = 0; l + 1 < layers; ++l) {
    f.a.push_back(at::addmm(biases[l], in, w[l].t()));
    f.h.push_back(at::leaky_relu(f.a.back(), alphas[l]));
    in = f.h.back();
  }
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
    const at::Tensor back = l == layers - 2 ? w[l + 1].expand({n_hat, w[l + 1].size(1)})
                                            : at::mm(f.t[l + 1], w[l + 1]);
    f.t[l] = at::leaky_relu_backward(back, f.a[l].narrow(0, n_scored, n_hat), alphas[l], false);
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
    const bool normalized = sn_state.has_value() && sn_state->defined();
    const int64_t n_hat = x_hat.size(0);
    if (n_hat == 0) {  // placeholders: the penalty's tensors are not needed
      f.t.assign(layers, at::Tensor());
    }
    // Saved: x, the weights used, a, h, t, grads, norms, then (normalised) the
    // original weights and the state; counts from `layers`.
    std::vector<at::Tensor> saved{f.x};
    saved.insert(saved.end(), f.w.begin(), f.w.end());
    saved.insert(saved.end(), f.a.begin(), f.a.end());
    saved.insert(saved.end(), f.h.begin(), f.h.end());
    saved.insert(saved.end(), f.t.begin(), f.t.end());
    saved.push_back(f.grads);
    saved.push_back(f.norms);
    if (normalized) {
      saved.insert(saved.end(), weights.begin(), weights.end());
      saved.push_back(*sn_state);
      ctx->saved_data["sn_indices"] = std::vector<int64_t>(sn_indices.begin(), sn_indices.end());
      ctx->saved_data["sn_offsets"] = std::vector<int64_t>(sn_offsets.begin(), sn_offsets.end());
    }
    ctx->saved_data["normalized"] = normalized;
    // The parameters' layouts: each gradient comes back with its parameter's strides
    // (torch's gradient layout contract, which DDP's buckets rely on).
    std::vector<int64_t> strides;
    for (const at::TensorList& params : {weights, biases}) {
      for (const at::Tensor& p : params) {
        // A parameter that is not dense gets contiguous gradients (no copy to learn its strides).
        const c10::DimVector want = p.is_non_overlapping_and_dense()
            ? c10::DimVector(p.strides().begin(), p.strides().end())
            : c10::contiguous_strides(p.sizes());
        strides.insert(strides.end(), want.begin(), want.end());
      }
    }
    ctx->saved_data["strides"] = strides;
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
    TORCH_CHECK_NOT_IMPLEMENTED(
        !c10::GradMode::is_enabled(), kOp,
        ": derivatives of order 2 are not implemented (the gradient penalty's own double "
        "backward is inside the op); call backward without create_graph");
    const int64_t layers = ctx->saved_data["layers"].toInt();
    // Outputs: real, fake, x_hat, the weights, the biases, alphas, center,
    // one_sided, sn_state, sn_indices, sn_offsets.
    variable_list out(3 + 2 * layers + 6);
    const auto saved = ctx->get_saved_variables();
    size_t k = 0;
    const at::Tensor x = saved[k++];
    std::vector<at::Tensor> w(saved.begin() + k, saved.begin() + k + layers);
    k += layers;
    std::vector<at::Tensor> a(saved.begin() + k, saved.begin() + k + layers - 1);
    k += layers - 1;
    std::vector<at::Tensor> h(saved.begin() + k, saved.begin() + k + layers - 1);
    k += layers - 1;
    std::vector<at::Tensor> t(saved.begin() + k, saved.begin() + k + layers);
    k += layers;
    const at::Tensor grads = saved[k++];
    const at::Tensor norms = saved[k++];
    const bool normalized = ctx->saved_data["normalized"].toBool();
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
      at::Tensor delta = at::cat(
          {g_real.defined() ? g_real : at::zeros({n_real}, opts),
           g_fake.defined() ? g_fake : at::zeros({n_scored - n_real}, opts)})
                             .view({n_scored, 1});
      for (int64_t l = layers - 1; l >= 0; --l) {
        const at::Tensor in = l == 0 ? x.narrow(0, 0, n_scored) : h[l - 1].narrow(0, 0, n_scored);
        dw[l] = at::mm(delta.t(), in);
        db[l] = at::sum(delta, 0);
        if (l > 0) {
          delta = at::leaky_relu_backward(
              at::mm(delta, w[l]), a[l - 1].narrow(0, 0, n_scored), alphas[l - 1], false);
        }
      }
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
        const at::Tensor r =
            at::leaky_relu_backward(p, a[l].narrow(0, n_scored, n_hat), alphas[l], false);
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
    if (normalized) {
      // d/dW of W / sigma(W), as torch's parametrization differentiates it.
      const std::vector<at::Tensor> original(saved.begin() + k, saved.begin() + k + layers);
      const at::Tensor& state = saved[k + layers];
      const auto indices = ctx->saved_data["sn_indices"].toIntVector();
      const auto offsets = ctx->saved_data["sn_offsets"].toIntVector();
      for (int64_t l = 0; l < layers; ++l) {
        if (dw[l].defined() && ctx->needs_input_grad(3 + l)) {
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
      if (ctx->needs_input_grad(3 + l) && dw[l].defined()) {
        out[3 + l] = like_param(dw[l], 2 * l);
      }
      if (ctx->needs_input_grad(3 + layers + l) && db[l].defined()) {
        out[3 + layers + l] = like_param(db[l], 2 * layers + l);
      }
    }
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

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("mlp_critic_penalty", &mlp_critic_penalty);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("mlp_critic_penalty", &mlp_critic_penalty);
}
#endif

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("mlp_critic_penalty", &mlp_critic_penalty_autograd);
}

}  // namespace fastgan
