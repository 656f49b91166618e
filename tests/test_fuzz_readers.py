"""Property-based fuzzing of the readers: mutated real and mock files, random bytes.

Whatever the bytes, ``read_spectrum`` either returns a spectrum that honours the contract
(ascending finite wavelengths, matching lengths, a boolean mask, an id) or raises
``SpectrumReadError`` naming the file, within SECONDS and MEMORY_BOUND per example; the
Tianchi zip reader yields a spectrum or a ``SpectrumReadError`` per index entry. Besides byte
mutations, header-value mutations rewrite the structural cards (NAXIS, NAXISn, BITPIX,
TFIELDS, TFORMn, PCOUNT, GCOUNT) of real-like FITS files with hostile values. A few hundred
examples here; more with ``HYPOTHESIS_PROFILE=fuzz`` (10 000, see README "Development").
"""
import gzip
import os
import resource
import signal
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectraforge.io import (
    IndexEntry, Spectrum, SpectrumReadError, read_spectrum, read_tianchi_entries, write_lamost_fits,
)

settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
SECONDS = 10  # a read that takes longer than this counts as a hang
MEMORY_BOUND = 1 << 30  # address space a read may add to the process (RLIMIT_AS); beyond it, a finding


def _seeds(tmp: Path) -> list[bytes]:
    """Valid files to mutate: the project's own LAMOST writer (both layouts, gzipped or not),
    a Tianchi txt, and the real LAMOST and SDSS files when ../shared/real is present."""
    n = 3909
    wave = 10.0 ** (3.5682 + 1e-4 * np.arange(n))
    spec = Spectrum(wave=wave, flux=np.linspace(50, 150, n).astype(np.float32),
                    ivar=np.full(n, 0.1, np.float32), mask=np.zeros(n, bool),
                    meta={"id": "7", "label": "star", "z": 0.0, "snr": 10.0})
    out = []
    for layout in ("image", "table"):
        for gz in (False, True):
            path = tmp / f"seed_{layout}{'.fits.gz' if gz else '.fits'}"
            write_lamost_fits(spec, path, layout=layout, gzip=gz)
            out.append(path.read_bytes())
    out.append(",".join(f"{v:.4f}" for v in np.linspace(0.5, 1.5, 2600)).encode())
    if REAL.is_dir():
        real = sorted(p for p in REAL.rglob("*.fits*"))
        out += [p.read_bytes() for p in real[:6]]
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seeds(tmp_path_factory.mktemp("seeds"))


class _Hang(BaseException):
    """Not an Exception: read_spectrum turns every Exception into a SpectrumReadError, which
    would hide the hang."""


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Hang()


def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def _read_within_time(path):
    """read_spectrum(path) under a time bound (SIGALRM, and the elapsed time checked after, for
    a stall inside C code) and a memory bound (RLIMIT_AS: MEMORY_BOUND above the address space
    the process has now), both restored afterwards."""
    old = signal.signal(signal.SIGALRM, _alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    bound = _address_space() + MEMORY_BOUND
    resource.setrlimit(resource.RLIMIT_AS, (bound if hard == resource.RLIM_INFINITY else min(bound, hard), hard))
    signal.alarm(SECONDS)
    t0 = time.monotonic()
    try:
        return read_spectrum(path)
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, old)
        if time.monotonic() - t0 > SECONDS:  # pragma: no cover - a finding
            pytest.fail(f"read_spectrum took over {SECONDS} s on {path.name} ({path.stat().st_size} bytes)")


def _check(path: Path) -> None:
    try:
        spec = _read_within_time(path)
    except SpectrumReadError as exc:
        assert exc.path == str(path) and exc.reason
        if isinstance(exc.__cause__, MemoryError) or "MemoryError" in exc.reason:  # pragma: no cover
            pytest.fail(f"read_spectrum needed more than {MEMORY_BOUND >> 20} MiB on {path.name}: {exc.reason}")
        return
    except MemoryError:  # pragma: no cover - a finding
        pytest.fail(f"read_spectrum needed more than {MEMORY_BOUND >> 20} MiB on {path.name}")
    except _Hang:  # pragma: no cover - a finding
        pytest.fail(f"read_spectrum took over {SECONDS} s on {path.name} ({path.stat().st_size} bytes)")
    # a mutation that still reads must still honour the contract
    assert isinstance(spec, Spectrum)
    n = len(spec.wave)
    assert n > 0 and len(spec.flux) == len(spec.ivar) == len(spec.mask) == n
    assert np.isfinite(spec.wave).all() and (np.diff(spec.wave) > 0).all()
    assert spec.mask.dtype == bool and str(spec.meta.get("id", ""))


def _mutate(blob: bytes, ops) -> bytes:
    data = bytearray(blob)
    for kind, where, value in ops:
        if not data:
            break
        i = where % len(data)
        if kind == "flip":
            data[i] ^= 1 << (value % 8)
        elif kind == "byte":
            data[i] = value % 256
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = bytes([value % 256]) * (1 + value % 80)
        elif kind == "digits":  # rewrite a header value: FITS cards are ASCII numbers
            data[i:i + 8] = str(value).encode()[:8].ljust(8)
    return bytes(data)


MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "byte", "cut", "insert", "digits"]),
                               st.integers(0, 2**31), st.integers(0, 2**40)), min_size=1, max_size=6)


@given(index=st.integers(0, 1000), ops=MUTATIONS, gz=st.booleans())
def test_mutated_files_raise_only_spectrum_read_error(seeds, tmp_path, index, ops, gz):
    blob = seeds[index % len(seeds)]
    if gz and blob[:2] == b"\x1f\x8b":  # mutate inside the compression too
        blob = gzip.compress(_mutate(gzip.decompress(blob), ops))
    else:
        blob = _mutate(blob, ops)
    suffix = ".txt" if not blob.startswith((b"SIMPLE", b"\x1f\x8b")) and index % 2 else ".fits"
    path = tmp_path / f"m{suffix}"
    path.write_bytes(blob)
    _check(path)


@pytest.fixture(scope="module")
def fits_seeds(seeds):
    """The FITS seeds uncompressed, each with its structural cards: (blob, [(hdu, offset, key)])."""
    from conftest import fits_cards

    out = []
    for blob in seeds:
        if blob[:2] == b"\x1f\x8b":
            blob = gzip.decompress(blob)
        if blob.startswith(b"SIMPLE"):
            out.append((blob, fits_cards(blob)))
    return out


# values for a structural card: the FITS limits and their neighbours, sizes past any file,
# integers at large, hostile TFORMs, and values of the wrong type
HEADER_VALUES = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 3, 5, 998, 999, 1000, 2**31 - 1, 2**31, 2**32, 2**63, 10**20, 10**29]).map(str),
    st.integers(-10**6, 10**12).map(str),
    st.sampled_from(["'100000000E'", "'E'", "'2600E'", "'0E'", "'1PE(1000000)'", "'1QD(99999999999)'", "'8X'",
                     "'Z'", "''", "'20A'", "'-1E'", "'3909E(1)'", "'99999999999999999999J'", "'1PE'", "'2600e'"]),
    st.sampled_from(["T", "F", "1.5", "1E9", "'5'", "", "/ a comment", "NAN", "0x10", "+7", "007"]),
)


@given(index=st.integers(0, 1000), edits=st.lists(st.tuples(st.integers(0, 10**6), HEADER_VALUES),
                                                   min_size=1, max_size=3), gz=st.booleans())
def test_header_value_mutations_fail_fast_and_small(fits_seeds, tmp_path, index, edits, gz):
    """Structural header cards of real-like FITS files rewritten with hostile values: a spectrum
    or a SpectrumReadError, within the time and memory bounds (astropy sizes its structures
    from these values unless the reader checks them first)."""
    blob, cards = fits_seeds[index % len(fits_seeds)]
    data = bytearray(blob)
    for which, value in edits:
        _, pos, _ = cards[which % len(cards)]
        data[pos + 10:pos + 80] = value.encode("ascii").ljust(70)[:70]
    path = tmp_path / ("h.fits.gz" if gz else "h.fits")
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    _check(path)


@given(blob=st.binary(max_size=20_000), suffix=st.sampled_from([".fits", ".fits.gz", ".txt", ".txt.gz", ""]))
def test_random_bytes_raise_only_spectrum_read_error(tmp_path, blob, suffix):
    path = tmp_path / f"r{suffix}"
    path.write_bytes(blob)
    _check(path)


def _three_member_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"train/{i}.txt", ",".join(["1.0"] * 2600))
    return path


def _assert_one_result_per_entry(out, n: int) -> None:
    assert len(out) == n
    for item in out:
        assert isinstance(item, (Spectrum, SpectrumReadError))


@given(ops=MUTATIONS)
@settings(max_examples=int(os.environ.get("FUZZ_ZIP_EXAMPLES", 60)))
def test_mutated_tianchi_zip_yields_spectrum_or_error_per_entry(tmp_path, ops):
    src = _three_member_zip(tmp_path / "src.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_mutate(src.read_bytes(), ops))
    entries = [IndexEntry(id=str(i), label="star", member=f"train/{i}.txt") for i in range(3)]
    try:
        out = read_tianchi_entries(bad, entries)
    except SpectrumReadError:
        return  # the whole source unreadable: one clear error
    _assert_one_result_per_entry(out, 3)


@given(ops=MUTATIONS)
@settings(max_examples=int(os.environ.get("FUZZ_ZIP_EXAMPLES", 60)))
def test_zip_mutated_after_listing_yields_spectrum_or_error_per_located_entry(tmp_path, ops):
    """prepare's workers read members at the offsets found when listing; a zip changed since
    (or damaged under the offsets) gives a spectrum or a SpectrumReadError per entry."""
    from spectraforge.io.tianchi import _list_members

    src = _three_member_zip(tmp_path / "src.zip")
    names, locations = _list_members(src)
    src.write_bytes(_mutate(src.read_bytes(), ops))
    entries = [IndexEntry(id=str(i), label="star", member=m) for i, m in enumerate(names)]
    _assert_one_result_per_entry(read_tianchi_entries(src, entries, locations), 3)


@given(ops=MUTATIONS)
@settings(max_examples=int(os.environ.get("FUZZ_ZIP_EXAMPLES", 60)))
def test_mutated_zip_lists_or_fails_clearly_and_reads_per_entry(tmp_path, ops):
    """The compact table-of-contents reader on a mutated zip: a SpectrumReadError for the
    whole source or a listing, whose every member then reads as a spectrum or its error."""
    from spectraforge.io.tianchi import _list_members

    src = _three_member_zip(tmp_path / "src.zip")
    src.write_bytes(_mutate(src.read_bytes(), ops))
    try:
        names, locations = _list_members(src)
    except SpectrumReadError:
        return
    entries = [IndexEntry(id=str(i), label="star", member=m) for i, m in enumerate(names)]
    _assert_one_result_per_entry(read_tianchi_entries(src, entries, locations), len(entries))
