"""The one bucketing policy: lengths, batch rows, multiples."""
from negojax import shapes


def test_length_buckets_are_powers_of_two_then_multiples_of_128():
    assert [shapes.bucket(n) for n in (1, 17, 200, 256, 257, 400, 513)] == [
        16, 32, 256, 256, 384, 512, 640]
    assert shapes.bucket(3, 1) == 4
    assert shapes.bucket(10, 64) == 64


def test_batches_pad_to_even_rows_then_multiples_of_8():
    assert [shapes.batch_bucket(n) for n in (1, 2, 3, 5, 6, 15, 17, 33)] == [
        1, 2, 4, 6, 6, 16, 24, 40]


def test_round_up():
    assert [shapes.round_up(n, 4) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]
