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
//
// spectral_norm_linear, (x W^T) / sigma + b, is composed of ATen ops on every
// device (its kernels are here too): W / sigma is never formed, the forward
// is one addmm on the CPU, and the backward is the two matrix products of a
// linear layer plus a rank-one update of the weight's gradient in place,
//   dL/dW = (g^T x) / sigma - c u v^T,  c = <g^T x, W> / sigma^2 = <dx, x> / sigma,
// with dx = g W / sigma the input's gradient (or <g^T x / sigma, W> / sigma
// when the input needs none): O(rows) work instead of passes over W.

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/div.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/outer.h>
#include <c10/util/accumulate.h>
#include <c10/core/GradMode.h>
#include <c10/core/WrapDimMinimal.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "common/bias_act.h"
#include "common/op_calls.h"
#include "common/spectral_norm.h"

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

// ---------------------------------------------------------------- spectral_norm_linear

void check_linear(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& state, int64_t index, int64_t offset) {
  const char* op = spectral_norm::kLinear;
  TORCH_CHECK_VALUE(
      weight.dim() == 2, op, ": `weight` must be 2-D (out_features, in_features), got shape ",
      weight.sizes());
  spectral_norm::check_scale(weight, state, index, offset, 0, op);
  TORCH_CHECK_VALUE(
      input.dim() >= 1 && input.size(-1) == weight.size(1), op, ": `input` must have shape (*, ",
      weight.size(1), ") for a weight of shape ", weight.sizes(), ", got ", input.sizes());
  TORCH_CHECK_TYPE(
      input.scalar_type() == weight.scalar_type(), op, ": `input` has dtype ",
      input.scalar_type(), " but `weight` has ", weight.scalar_type());
  check_same_device(input, {"input"}, weight, {"weight"}, op);
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK_VALUE(
        bias->dim() == 1 && bias->size(0) == weight.size(0) &&
            bias->scalar_type() == weight.scalar_type() && bias->device() == weight.device(),
        op, ": `bias` must be a ", weight.scalar_type(), " tensor of shape (", weight.size(0),
        ",) on ", weight.device(), ", got ", bias->scalar_type(), " ", bias->sizes(), " on ",
        bias->device());
  }
}

// sigma of a state in the weight's dtype (what W / sigma divides by): a host
// number for a CPU state, a one-element tensor on the device otherwise (no sync).
struct Sigma {
  bool on_host;
  double value;
  at::Tensor tensor;

  Sigma(const at::Tensor& state, int64_t index, c10::ScalarType dtype) : on_host(state.is_cpu()) {
    if (on_host) {
      value = state.const_data_ptr<double>()[index];
    } else {
      value = 0;
      tensor = state.narrow(0, index, 1).to(dtype);
    }
  }

};

// The output's shape: the input's with the last size replaced by out_features.
std::vector<int64_t> linear_out_shape(const at::Tensor& input, int64_t out_features) {
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = out_features;
  return shape;
}

at::Tensor spectral_norm_linear(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& state, int64_t index, int64_t offset) {
  check_linear(input, weight, bias, state, index, offset);
  const at::Tensor x = input.reshape({-1, weight.size(1)});
  const bool has_bias = bias.has_value() && bias->defined();
  const Sigma sigma(state, index, weight.scalar_type());
  at::Tensor y;
  if (sigma.on_host && has_bias) {
    y = at::addmm(*bias, x, weight.t(), 1.0, 1.0 / sigma.value);
  } else {
    y = at::mm(x, weight.t());
    y = sigma.on_host ? y.mul_(1.0 / sigma.value) : y.div_(sigma.tensor);
    if (has_bias) {
      y.add_(*bias);
    }
  }
  return y.view(linear_out_shape(input, weight.size(0)));
}

at::Tensor call_spectral_norm_linear(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& state, int64_t index, int64_t offset) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastgan::spectral_norm_linear", "")
                             .typed<at::Tensor(
                                 const at::Tensor&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, const at::Tensor&, int64_t,
                                 int64_t)>();
  return op.call(input, weight, bias, state, index, offset);
}

// <a, b> over all elements, as a 0-dim tensor.
at::Tensor inner_product(const at::Tensor& a, const at::Tensor& b) {
  const auto t = a.scalar_type();
  if (t == at::kFloat || t == at::kDouble) {
    return at::dot(a.reshape(-1), b.reshape(-1));
  }
  return at::sum(at::mul(a, b), at::kFloat).to(t);
}

class SpectralNormLinearFunction : public torch::autograd::Function<SpectralNormLinearFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
      const std::optional<at::Tensor>& bias, const at::Tensor& state, int64_t index,
      int64_t offset) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({input, weight, state});
    ctx->saved_data["index"] = index;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_spectral_norm_linear(input, weight, bias, state, index, offset);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Tensors: input (edge 0), weight (1), bias (2), state (3).
    variable_list out(6);
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) {
      return out;
    }
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& state = saved[2];
    const int64_t index = ctx->saved_data["index"].toInt();
    const int64_t offset = ctx->saved_data["offset"].toInt();
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_w = ctx->needs_input_grad(1);
    const bool need_b = ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2);
    const int64_t n_out = weight.size(0);
    const int64_t n_in = weight.size(1);
    const at::Tensor g = grad.reshape({-1, n_out});
    const at::Tensor x = input.reshape({-1, n_in});
    if (need_b) {
      out[2] = at::sum(g, 0);
    }
    if (!need_x && !need_w) {
      return out;
    }
    const auto dtype = weight.scalar_type();
    const at::Tensor u = state.narrow(0, offset, n_out).to(dtype);
    const at::Tensor v = state.narrow(0, offset + n_out, n_in).to(dtype);
    if (c10::GradMode::is_enabled() &&
        (grad.requires_grad() || input.requires_grad() || weight.requires_grad())) {
      // A graph of the backward (create_graph=True, e.g. a gradient penalty):
      // differentiable ATen ops, sigma = u^T W v recomputed so that its
      // dependence on W is differentiated too.
      const at::Tensor sigma = at::dot(u, at::mv(weight, v));
      const at::Tensor gs = at::div(g, sigma);
      const at::Tensor dx = at::mm(gs, weight);
      if (need_x) {
        out[0] = dx.view(input.sizes());
      }
      if (need_w) {
        const at::Tensor c = at::div(inner_product(dx, x), sigma);
        out[1] = at::sub(at::mm(gs.t(), x), at::mul(at::outer(u, v), c));
      }
      return out;
    }
    // Tensor ops only, sigma included (no host reads): the backward also
    // runs on fake tensors when torch.compile traces it.
    const at::Tensor sigma = state.narrow(0, index, 1).to(dtype);
    const at::Tensor gs = at::div(g, sigma);
    at::Tensor dx;
    if (need_x) {
      dx = at::mm(gs, weight);
      out[0] = dx.view(input.sizes());
    }
    if (need_w) {
      at::Tensor dw = at::mm(gs.t(), x);
      // <g^T x, W> / sigma^2 = <dx, x> / sigma = <dw, W> / sigma.
      const at::Tensor dot = need_x ? inner_product(dx, x) : inner_product(dw, weight);
      dw.addr_(at::mul(u, at::div(dot, sigma)).neg_(), v);
      out[1] = dw;
    }
    return out;
  }
};

at::Tensor spectral_norm_linear_autograd(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& state, int64_t index, int64_t offset) {
  return SpectralNormLinearFunction::apply(input, weight, bias, state, index, offset);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("spectral_norm_linear", &spectral_norm_linear);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("spectral_norm_linear", &spectral_norm_linear);
}
#endif

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("spectral_norm_linear", &spectral_norm_linear_autograd);
  m.impl("spectral_norm_scale", &spectral_norm_scale_autograd);
  m.impl("bias_act", &bias_act_autograd);
  m.impl("bias_act_grad", &bias_act_grad_autograd);
}

}  // namespace fastgan
