// Autograd for fastgan's differentiable elementwise ops, in C++.
//
// bias_act's backward is bias_act_grad (order 1), whose own backward is
// bias_act_grad again: with respect to grad it is the same order, with
// respect to x one order higher, and nothing at all for activations whose
// second derivative is zero (linear, relu, lrelu). Gradients that do not
// arrive stay undefined instead of being filled with zeros, so a gradient
// penalty's double backward never walks back through the critic's forward
// pass on their account. Kept in C++ so that each node costs what torch's
// own nodes cost (a Python autograd.Function costs tens of microseconds per
// call, which adds up over the layers of a critic).
//
// spectral_norm_scale (W / sigma) saves the weight and the power iteration's
// state; its backward is the fused spectral_norm_scale_backward op. When a
// graph of the backward itself is asked for (create_graph=True through the
// normalised weight), the backward is written with ATen ops instead, sigma
// recomputed as u^T W v so that its dependence on W is differentiated too.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/div.h>
#include <ATen/ops/sub.h>
#include <c10/util/accumulate.h>
#include <c10/core/GradMode.h>
#include <c10/core/WrapDimMinimal.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "common/bias_act.h"

namespace fastgan {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_bias_act(
    const at::Tensor& x, const std::optional<at::Tensor>& bias, c10::string_view act,
    double alpha, double gain, int64_t dim) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastgan::bias_act", "")
          .typed<at::Tensor(
              const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view, double,
              double, int64_t)>();
  return op.call(x, bias, act, alpha, gain, dim);
}

at::Tensor call_bias_act_grad(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& bias,
    c10::string_view act, double alpha, double gain, int64_t dim, int64_t order) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastgan::bias_act_grad", "")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
              c10::string_view, double, double, int64_t, int64_t)>();
  return op.call(grad, x, bias, act, alpha, gain, dim, order);
}

// The bias gradient: the sum over every dimension but `dim`.
at::Tensor reduce_to_bias(const at::Tensor& grad_x, int64_t dim) {
  dim = c10::maybe_wrap_dim(dim, grad_x.dim());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad_x.dim(); ++d) {
    if (d != dim) {
      dims.push_back(d);
    }
  }
  return at::sum(grad_x, dims);
}

std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

struct Params {
  std::string act;
  double alpha;
  double gain;
  int64_t dim;

  void save(AutogradContext* ctx) const {
    ctx->saved_data["act"] = act;
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["gain"] = gain;
    ctx->saved_data["dim"] = dim;
  }

  static Params load(AutogradContext* ctx) {
    return {
        ctx->saved_data["act"].toStringRef(), ctx->saved_data["alpha"].toDouble(),
        ctx->saved_data["gain"].toDouble(), ctx->saved_data["dim"].toInt()};
  }
};

class BiasActFunction : public torch::autograd::Function<BiasActFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& x, const std::optional<at::Tensor>& bias,
      c10::string_view act, double alpha, double gain, int64_t dim) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, bias.value_or(at::Tensor())});
    Params{std::string(act), alpha, gain, dim}.save(ctx);
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_bias_act(x, bias, act, alpha, gain, dim);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // One entry per forward argument; tensors are x (edge 0) and bias (1).
    variable_list out(6);
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) {
      return out;
    }
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& bias = saved[1];
    const Params p = Params::load(ctx);
    const at::Tensor grad_x =
        call_bias_act_grad(grad, x, optional_of(bias), p.act, p.alpha, p.gain, p.dim, 1);
    if (ctx->needs_input_grad(0)) {
      out[0] = grad_x;
    }
    if (bias.defined() && ctx->needs_input_grad(1)) {
      out[1] = reduce_to_bias(grad_x, p.dim);
    }
    return out;
  }
};

class BiasActGradFunction : public torch::autograd::Function<BiasActGradFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& x,
      const std::optional<at::Tensor>& bias, c10::string_view act, double alpha, double gain,
      int64_t dim, int64_t order) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({grad, x, bias.value_or(at::Tensor())});
    Params{std::string(act), alpha, gain, dim}.save(ctx);
    ctx->saved_data["order"] = order;
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_bias_act_grad(grad, x, bias, act, alpha, gain, dim, order);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Tensors: grad (edge 0), x (1), bias (2).
    variable_list out(8);
    const at::Tensor& grad_out = grads[0];
    if (!grad_out.defined()) {
      return out;
    }
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = saved[0];
    const at::Tensor& x = saved[1];
    const std::optional<at::Tensor> bias = optional_of(saved[2]);
    const Params p = Params::load(ctx);
    const int64_t order = ctx->saved_data["order"].toInt();
    if (ctx->needs_input_grad(0)) {
      out[0] = call_bias_act_grad(grad_out, x, bias, p.act, p.alpha, p.gain, p.dim, order);
    }
    const bool wants_x = ctx->needs_input_grad(1) || (bias.has_value() && ctx->needs_input_grad(2));
    const auto act = bias_act::parse_act(p.act, "fastgan::bias_act_grad");
    if (wants_x && !bias_act::piecewise_linear(act)) {
      TORCH_CHECK(
          order < bias_act::kMaxOrder, "fastgan::bias_act: derivatives of order ",
          order + 1, " are not implemented (up to ", bias_act::kMaxOrder, ")");
      const at::Tensor d_x = call_bias_act_grad(
          at::mul(grad_out, grad), x, bias, p.act, p.alpha, p.gain, p.dim, order + 1);
      if (ctx->needs_input_grad(1)) {
        out[1] = d_x;
      }
      if (bias.has_value() && ctx->needs_input_grad(2)) {
        out[2] = reduce_to_bias(d_x, p.dim);
      }
    }
    return out;
  }
};

at::Tensor bias_act_autograd(
    const at::Tensor& x, const std::optional<at::Tensor>& bias, c10::string_view act,
    double alpha, double gain, int64_t dim) {
  return BiasActFunction::apply(x, bias, act, alpha, gain, dim);
}

at::Tensor bias_act_grad_autograd(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& bias,
    c10::string_view act, double alpha, double gain, int64_t dim, int64_t order) {
  return BiasActGradFunction::apply(grad, x, bias, act, alpha, gain, dim, order);
}

at::Tensor call_spectral_norm_scale(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastgan::spectral_norm_scale", "")
                             .typed<at::Tensor(
                                 const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t)>();
  return op.call(weight, state, index, offset, dim);
}

at::Tensor call_spectral_norm_scale_backward(
    const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& state, int64_t index,
    int64_t offset, int64_t dim) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastgan::spectral_norm_scale_backward", "")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
              int64_t)>();
  return op.call(grad, weight, state, index, offset, dim);
}

// u v^T laid out as the weight: U[a, h, b] = u[h] v[a * B + b].
at::Tensor outer_as_weight(
    const at::Tensor& weight, const at::Tensor& state, int64_t offset, int64_t dim) {
  const int64_t h = weight.size(dim);
  const int64_t cols = h == 0 ? 0 : weight.numel() / h;
  const int64_t before = c10::multiply_integers(weight.sizes().begin(), weight.sizes().begin() + dim);
  const auto as_weight = [&](const at::Tensor& t) {
    return t.to(weight.scalar_type());
  };
  const at::Tensor u = as_weight(state.narrow(0, offset, h));
  const at::Tensor v = as_weight(state.narrow(0, offset + h, cols));
  const int64_t after = before == 0 ? 0 : cols / before;
  return at::mul(u.view({1, h, 1}), v.view({before, 1, after})).reshape(weight.sizes());
}

class SpectralNormScaleFunction : public torch::autograd::Function<SpectralNormScaleFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& weight, const at::Tensor& state, int64_t index,
      int64_t offset, int64_t dim) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({weight, state});
    ctx->saved_data["index"] = index;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["dim"] = dim;
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_spectral_norm_scale(weight, state, index, offset, dim);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(5);
    const at::Tensor& grad = grads[0];
    if (!grad.defined() || !ctx->needs_input_grad(0)) {
      return out;
    }
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& weight = saved[0];
    const at::Tensor& state = saved[1];
    const int64_t index = ctx->saved_data["index"].toInt();
    const int64_t offset = ctx->saved_data["offset"].toInt();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    if (c10::GradMode::is_enabled() && (grad.requires_grad() || weight.requires_grad())) {
      const at::Tensor uv = outer_as_weight(weight, state, offset, dim);
      const at::Tensor sigma = at::sum(at::mul(uv, weight));
      const at::Tensor coef = at::div(at::sum(at::mul(grad, weight)), at::mul(sigma, sigma));
      out[0] = at::sub(at::div(grad, sigma), at::mul(coef, uv));
    } else {
      out[0] = call_spectral_norm_scale_backward(grad, weight, state, index, offset, dim);
    }
    return out;
  }
};

at::Tensor spectral_norm_scale_autograd(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim) {
  return SpectralNormScaleFunction::apply(weight, state, index, offset, dim);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("spectral_norm_scale", &spectral_norm_scale_autograd);
  m.impl("bias_act", &bias_act_autograd);
  m.impl("bias_act_grad", &bias_act_grad_autograd);
}

}  // namespace fastgan
