"""The faceEmbeding string: round trip, size, and every way a stored string can be bad."""

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kiosk.errors import EmbeddingFormatError, NotEnrolled
from kiosk.model.embedding_format import MAX_VECTORS, decode, encode, try_decode

METHOD = "mobilefacenet-v1"


def unit(k, dim=192, seed=0):
    v = np.random.default_rng(seed).normal(size=(k, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_round_trip_keeps_vectors_within_float16_precision():
    vectors = unit(3)
    back = decode(encode(vectors, METHOD), method=METHOD, dim=192)
    assert back.shape == (3, 192) and back.dtype == np.float32
    assert np.allclose(back, vectors, atol=2e-3)
    assert np.allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)


def test_header_names_version_method_dimension_and_count():
    text = encode(unit(3), METHOD)
    assert text.startswith("kfe1;mobilefacenet-v1;192;3;")


def test_size_is_512_characters_per_192d_vector_plus_a_short_header():
    header = len("kfe1;mobilefacenet-v1;192;3;")
    assert len(encode(unit(1), METHOD)) == header + 512
    assert len(encode(unit(3), METHOD)) == header + 3 * 512


def test_single_vector_and_unnormalised_input_are_accepted():
    v = unit(1)[0] * 7.5
    back = decode(encode(v, METHOD), method=METHOD, dim=192)
    assert back.shape == (1, 192)
    assert float(back[0] @ (v / 7.5)) > 0.999


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_means_not_enrolled(text):
    with pytest.raises(NotEnrolled, match="not enrolled"):
        decode(text, method=METHOD, dim=192)


def _payload(values: np.ndarray) -> str:
    return base64.b64encode(values.astype("<f2").tobytes()).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello", "not in the kiosk's format"),
        ("kfe2;mobilefacenet-v1;192;1;AAAA", "version"),
        ("kfe1;mobilefacenet-v1;192;1", "malformed"),
        ("kfe1;dlib-resnet-v1;192;1;AAAA", "another method"),
        ("kfe1;mobilefacenet-v1;128;1;AAAA", "dimension 128"),
        ("kfe1;mobilefacenet-v1;1x2;1;AAAA", "numbers"),
        ("kfe1;mobilefacenet-v1;192;0;", "no vectors"),
        (f"kfe1;mobilefacenet-v1;192;{MAX_VECTORS + 1};AAAA", "at most"),
        ("kfe1;mobilefacenet-v1;192;1;!!!!", "base64"),
        ("kfe1;mobilefacenet-v1;192;2;" + _payload(np.ones(192)), "does not hold 2 vectors"),
        ("kfe1;mobilefacenet-v1;192;1;" + _payload(np.zeros(192)), "zero vector"),
        ("kfe1;mobilefacenet-v1;192;1;" + _payload(np.full(192, np.nan)), "NaN"),
        ("kfe1;mobilefacenet-v1;192;1;" + _payload(np.full(192, np.inf)), "NaN or infinite"),
    ],
)
def test_bad_strings_are_refused_with_a_plain_reason(text, reason):
    with pytest.raises(EmbeddingFormatError, match=reason):
        decode(text, method=METHOD, dim=192)
    assert try_decode(text, method=METHOD, dim=192) is None


def test_encode_refuses_what_decode_would_refuse():
    with pytest.raises(EmbeddingFormatError):
        encode(unit(MAX_VECTORS + 1), METHOD)
    with pytest.raises(EmbeddingFormatError):
        encode(np.zeros((1, 192)), METHOD)
    with pytest.raises(EmbeddingFormatError):
        encode(unit(1), "bad;method")
    with pytest.raises(EmbeddingFormatError):
        encode(np.zeros((0, 192)), METHOD)


@settings(max_examples=60, deadline=None, database=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, MAX_VECTORS), st.integers(1, 256)),
                  elements=st.floats(-1000, 1000, width=32)))
def test_decode_of_encode_is_the_normalised_input(vectors):
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if np.any(norms < 1e-6):
        with pytest.raises(EmbeddingFormatError):
            encode(vectors, METHOD)
        return
    back = decode(encode(vectors, METHOD), method=METHOD, dim=vectors.shape[1])
    expected = vectors / norms[:, None]
    assert back.shape == vectors.shape
    assert np.all(np.sum(back * expected, axis=1) > 0.999)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(
    st.text(max_size=80),
    st.builds(lambda rest: "kfe1;mobilefacenet-v1;" + rest, st.text(max_size=60)),
    st.builds(lambda n, b: f"kfe1;mobilefacenet-v1;4;{n};" + base64.b64encode(b).decode(),
              st.integers(0, 30), st.binary(max_size=64)),
))
def test_random_strings_raise_only_embedding_format_error(text):
    try:
        out = decode(text, method=METHOD, dim=4)
    except EmbeddingFormatError:
        return
    assert out.shape[1] == 4 and np.all(np.isfinite(out))
