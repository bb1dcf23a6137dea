"""Run inside an emulated CPU by tests/test_quantize.py (qemu-x86_64 -cpu Haswell: AVX2, no AVX-512, no VNNI):
an int8 graph against PyTorch fp32 references; prints one JSON line. Needs only numpy and onnxruntime."""

import json
import sys

import numpy as np
import onnxruntime as ort

path, ref_path, inp, key, src = sys.argv[1:6]
ref = np.load(ref_path)
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.log_severity_level = 3
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
got = np.concatenate([sess.run(None, {inp: ref[src][i : i + 1]})[0] for i in range(len(ref[src]))])
diff = np.abs(got - ref[key])
print(json.dumps({"max": float(diff.max()), "mean": float(diff.mean())}))
