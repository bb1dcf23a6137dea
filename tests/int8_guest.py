"""Run inside an emulated CPU by tests/test_quantize.py (qemu-x86_64 -cpu Haswell: AVX2, no AVX-512, no VNNI):
one int8 graph on the inputs in an .npz, its raw outputs saved to another .npz (the host compares them with
PyTorch fp32). Needs only numpy and onnxruntime."""

import sys

import numpy as np
import onnxruntime as ort

path, in_path, inp, src, out_path = sys.argv[1:6]
data = np.load(in_path)[src]
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.log_severity_level = 3
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
np.save(out_path, np.concatenate([sess.run(None, {inp: data[i : i + 1]})[0] for i in range(len(data))]))
