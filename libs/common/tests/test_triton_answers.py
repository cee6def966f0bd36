"""Answers of a Triton server are checked before they are used: a server whose Python backend's
shared memory is damaged answered requests without their outputs (deploy/triton/README.md)."""

import numpy as np
import pytest
from tritonclient.grpc import InferResult, service_pb2

from poise_common.inference.backend import InferenceUnavailable, StreamLost
from poise_common.inference.triton import checked_result, faces_from_result

_TYPES = {np.int32: "INT32", np.float32: "FP32"}


def _answer(**arrays: np.ndarray) -> InferResult:
    """A gRPC inference answer as the server sends it: each output's shape, type and raw bytes."""
    response = service_pb2.ModelInferResponse(model_name="face_landmarker")
    for name, array in arrays.items():
        output = response.outputs.add(name=name, datatype=_TYPES[array.dtype.type])
        output.shape.extend(array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
    return InferResult(response)


def _faces(count: int, landmarks: int = 478) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(count)
    return {
        "FACE_COUNT": np.array([[count]], np.int32),
        "LANDMARKS": rng.random((1, count, landmarks, 3), dtype=np.float32),
        "BLENDSHAPES": rng.random((1, count, 52), dtype=np.float32),
        "MATRICES": rng.random((1, count, 4, 4), dtype=np.float32),
    }


OUTPUTS = ["FACE_COUNT", "LANDMARKS", "BLENDSHAPES", "MATRICES"]


@pytest.mark.parametrize("count", [0, 1, 2])
def test_a_whole_answer_gives_its_faces(count):
    arrays = _faces(count)
    result = checked_result(_answer(**arrays), "face_landmarker", OUTPUTS, in_sequence=True)
    faces = faces_from_result(result)
    assert faces.count == count
    if count:
        assert np.array_equal(faces.landmarks, arrays["LANDMARKS"][0])
        assert np.array_equal(faces.blendshapes, arrays["BLENDSHAPES"][0])
        assert np.array_equal(faces.matrices, arrays["MATRICES"][0])


def test_an_answer_without_an_output_loses_the_sequence():
    arrays = _faces(1)
    del arrays["LANDMARKS"]
    with pytest.raises(StreamLost, match="without LANDMARKS"):
        checked_result(_answer(**arrays), "face_landmarker", OUTPUTS, in_sequence=True)


def test_a_stateless_answer_without_its_output_is_unavailable():
    with pytest.raises(InferenceUnavailable, match="without SEGMENTS"):
        checked_result(_answer(), "speech_recognizer", ["SEGMENTS"], in_sequence=False)


@pytest.mark.parametrize("count, landmarks", [(2, 478), (1, 468)])
def test_arrays_that_disagree_with_the_face_count_lose_the_sequence(count, landmarks):
    arrays = _faces(count, landmarks)
    arrays["FACE_COUNT"] = np.array([[1]], np.int32)  # two faces' arrays for one face, or too few landmarks
    result = checked_result(_answer(**arrays), "face_landmarker", OUTPUTS, in_sequence=True)
    with pytest.raises(StreamLost, match="shapes"):
        faces_from_result(result)
