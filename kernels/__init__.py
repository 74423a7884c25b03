"""fastgan's Triton kernels (installed as ``fastgan.kernels``).

One module per op. Each imports triton itself, so ``import fastgan`` never
requires triton; the kernels run on CUDA tensors, and on CPU tensors under
``TRITON_INTERPRET=1`` (set before these modules are imported).
"""
