"""Writes the tiny ONNX models the tests use (run: /usr/bin/python3 make_test_models.py).

nan_model.onnx:    [N,1,28,28] -> Flatten -> Gemm with NaN weights -> [N,10] (all NaN)
seven_class.onnx:  [N,1,28,28] -> Flatten -> Gemm -> [N,7] (a wrong output shape)
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def gemm_model(path, w, b):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", w.shape[0]])
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y],
                              [numpy_helper.from_array(w.astype(np.float32), "W"),
                               numpy_helper.from_array(b.astype(np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)


rng = np.random.default_rng(0)
gemm_model("nan_model.onnx", np.full((10, 784), np.nan), np.zeros(10))
gemm_model("seven_class.onnx", rng.normal(size=(7, 784)) * 0.01, np.zeros(7))
