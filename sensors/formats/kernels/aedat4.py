"""AEDAT 4.0 packet walker: LZ4 frame decompression and EventPacket flatbuffer decoding, all packets of a block of
the file in one call.

A packet is ``int32 stream id, int32 size`` then ``size`` bytes: a size-prefixed ``EventPacket`` flatbuffer,
LZ4-frame compressed when the file header says LZ4 / LZ4_HIGH (ZSTD files go through the ``aedat`` package
instead). The flatbuffer's root table holds, as field 0, a vector of 16-byte ``Event`` structs
``{int64 t, int16 x, int16 y, bool on, 3 bytes padding}``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .memory import DVS_RECORD_BYTES, load8, load_byte, put_dvs, store8

__all__ = [
    "OK", "NEED_DATA", "OUT_FULL", "NEED_SCRATCH", "BAD_PACKET", "BAD_LZ4", "BAD_FLATBUFFER",
    "lz4_frame_decode", "lz4_frame_bound", "walk_packets",
]

OK = 0
NEED_DATA = 1  # the next packet is not wholly in the buffer: read more
OUT_FULL = 2  # the next packet's events do not fit in ``out``
NEED_SCRATCH = 3  # the decompression buffer is too small (required size in the status detail)
BAD_PACKET = 4
BAD_LZ4 = 5
BAD_FLATBUFFER = 6

_LZ4_MAGIC = 0x184D2204


@nb.njit(cache=True, nogil=True, inline="always")
def _u32(b, i):
    return np.int64(b[i]) | (np.int64(b[i + 1]) << 8) | (np.int64(b[i + 2]) << 16) | (np.int64(b[i + 3]) << 24)


@nb.njit(cache=True, nogil=True, inline="always")
def _u16(b, i):
    return np.int64(b[i]) | (np.int64(b[i + 1]) << 8)


@nb.njit(cache=True, nogil=True)
def _lz4_block(src, ip, iend, dst, op, oend):
    """Decode one LZ4 block ``src[ip:iend]`` to ``dst[op:]``; earlier output is the dictionary. Returns the new
    output position, or -1 if the block is malformed or would overflow ``dst[:oend]``.

    Copies go 8 bytes at a time and may write up to 15 bytes past their end (overwritten by the next copy, and
    only where ``dst`` has room for it); reads stay inside ``src``."""
    slen = src.shape[0]
    dlen = dst.shape[0]
    while ip < iend:
        token = load_byte(src, ip)
        ip += 1
        lit = token >> 4
        if lit == 15:
            while True:
                if ip >= iend:
                    return -1
                b = load_byte(src, ip)
                ip += 1
                lit += b
                if b != 255:
                    break
        if ip + lit > iend or op + lit > oend:
            return -1
        if lit <= 16 and ip + 16 <= slen and op + 16 <= dlen:
            store8(dst, op, load8(src, ip))  # the common short run: two fixed copies, no loop
            store8(dst, op + 8, load8(src, ip + 8))
        elif ip + lit + 8 <= slen and op + lit + 8 <= dlen:
            for j in range(0, lit, 8):
                store8(dst, op + j, load8(src, ip + j))
        else:
            for j in range(lit):
                dst[op + j] = src[ip + j]
        ip += lit
        op += lit
        if ip >= iend:
            break  # the last sequence holds literals only
        if ip + 2 > iend:
            return -1
        offset = load_byte(src, ip) | (load_byte(src, ip + 1) << 8)
        ip += 2
        if offset == 0 or offset > op:
            return -1
        mlen = token & 15
        if mlen == 15:
            while True:
                if ip >= iend:
                    return -1
                b = load_byte(src, ip)
                ip += 1
                mlen += b
                if b != 255:
                    break
        mlen += 4
        if op + mlen > oend:
            return -1
        m = op - offset
        if mlen <= 16 and offset >= 16 and op + 16 <= dlen:
            store8(dst, op, load8(dst, m))
            store8(dst, op + 8, load8(dst, m + 8))
        elif offset >= 8 and op + mlen + 8 <= dlen:
            # source and destination are ≥ 8 apart: each 8-byte step reads bytes already final
            for j in range(0, mlen, 8):
                store8(dst, op + j, load8(dst, m + j))
        else:
            # byte by byte, forward: an overlapping match (offset < length) repeats the last ``offset`` bytes
            for j in range(mlen):
                dst[op + j] = dst[m + j]
        op += mlen
    return op


@nb.njit(cache=True, nogil=True)
def lz4_frame_bound(src, start, end):
    """Upper bound of a frame's decompressed size (sum of block maxima), or -1 if its header is malformed."""
    if end - start < 7 or _u32(src, start) != _LZ4_MAGIC:
        return -1
    flg = np.int64(src[start + 4])
    bd = np.int64(src[start + 5])
    if (flg >> 6) != 1:
        return -1
    block_max = 1 << (8 + 2 * ((bd >> 4) & 7))
    ip = start + 6
    if flg & 0x08:
        ip += 8
    if flg & 0x01:
        ip += 4
    ip += 1
    total = 0
    while True:
        if ip + 4 > end:
            return -1
        size = _u32(src, ip)
        ip += 4
        if size == 0:
            return total
        raw = (size >> 31) & 1
        size &= 0x7FFFFFFF
        total += size if raw else block_max
        ip += size
        if flg & 0x10:
            ip += 4


@nb.njit(cache=True, nogil=True)
def lz4_frame_decode(src, start, end, dst):
    """Decompress the LZ4 frame ``src[start:end]`` into ``dst``; returns the decompressed size or -1."""
    if end - start < 7 or _u32(src, start) != _LZ4_MAGIC:
        return -1
    flg = np.int64(src[start + 4])
    ip = start + 6
    if flg & 0x08:
        ip += 8
    if flg & 0x01:
        ip += 4
    ip += 1  # header checksum (not verified: the packet size already bounds the frame)
    op = 0
    oend = dst.shape[0]
    while True:
        if ip + 4 > end:
            return -1
        size = _u32(src, ip)
        ip += 4
        if size == 0:
            return op
        raw = (size >> 31) & 1
        size &= 0x7FFFFFFF
        if ip + size > end:
            return -1
        if raw:
            if op + size > oend:
                return -1
            dst[op : op + size] = src[ip : ip + size]
            op += size
        else:
            op = _lz4_block(src, ip, ip + size, dst, op, oend)
            if op < 0:
                return -1
        ip += size
        if flg & 0x10:
            ip += 4


@nb.njit(cache=True, nogil=True)
def _events_vector(fb, start, end):
    """(position, count) of the Event vector in the size-prefixed flatbuffer ``fb[start:end]``, or (-1, 0)."""
    if end - start < 8:
        return -1, 0
    base = start + 4  # after the size prefix
    table = base + _u32(fb, base)
    if table + 4 > end:
        return -1, 0
    soff = _u32(fb, table)
    if soff >= 1 << 31:
        soff -= 1 << 32
    vtable = table - soff
    if vtable < base or vtable + 4 > end:
        return -1, 0
    vsize = _u16(fb, vtable)
    if vsize < 6 or vtable + vsize > end:
        return -1, 0
    field = _u16(fb, vtable + 4)
    if field == 0:
        return -1, -1  # no elements field: an empty packet
    at = table + field
    if at + 4 > end:
        return -1, 0
    vec = at + _u32(fb, at)
    if vec + 4 > end:
        return -1, 0
    n = _u32(fb, vec)
    if vec + 4 + 16 * n > end:
        return -1, 0
    return vec + 4, n


@nb.njit(cache=True, nogil=True)
def _copy_events(fb, pos, n, outb, k, last_t, width, height):
    """Copy ``n`` Event structs at ``fb[pos:]`` (inside ``fb``, checked by the caller) to records ``k..`` of
    ``outb``; returns (last t, 1 if any event went back in time or fell outside ``width × height``)."""
    bad = 0
    for i in range(n):
        b = pos + 16 * i
        t = np.int64(load8(fb, b))
        w = np.int64(load8(fb, b + 8))  # x i16, y i16, on u8, 3 padding bytes
        x = w & 0xFFFF
        y = (w >> 16) & 0xFFFF
        bad |= (t < last_t) | (x >= width) | (y >= height)  # a negative x or y reads as ≥ 32768 here
        last_t = t
        put_dvs(outb, k + i, x | (y << 16), t, ((w >> 32) & 0xFF) != 0)
    return last_t, bad


@nb.njit(cache=True, nogil=True)
def walk_packets(buf, start, end, stream_id, trigger_id, lz4, scratch, outb, k, skipped, detail, width, height):
    """Decode the packets in ``buf[start:end]``: events of ``stream_id`` go to ``out[k:]``, packets of other streams
    are counted in ``skipped[stream]`` (streams ≥ its length in the last slot), and the events of ``trigger_id``
    packets are counted in ``detail[3]``.

    Returns (next packet position, events in out, status). ``detail``: [0] the scratch size needed
    (NEED_SCRATCH), the events of a packet too big for ``out`` (OUT_FULL) or the offset of a bad packet;
    [1] the last time seen; [2] 1 once an event went back in time or fell outside the sensor; [3] triggers.
    """
    pos = start
    cap = outb.shape[0] // DVS_RECORD_BYTES
    nskip = skipped.shape[0]
    while True:
        if pos + 8 > end:
            return pos, k, NEED_DATA
        sid = _u32(buf, pos)
        size = _u32(buf, pos + 4)
        if sid >= 1 << 31 or size >= 1 << 31:
            detail[0] = pos
            return pos, k, BAD_PACKET
        body = pos + 8
        if body + size > end:
            return pos, k, NEED_DATA
        if sid != stream_id and sid != trigger_id:
            skipped[min(sid, nskip - 1)] += 1
            pos = body + size
            continue
        if lz4:
            bound = lz4_frame_bound(buf, body, body + size)
            if bound < 0:
                detail[0] = pos
                return pos, k, BAD_LZ4
            if bound > scratch.shape[0]:
                detail[0] = bound
                return pos, k, NEED_SCRATCH
            m = lz4_frame_decode(buf, body, body + size, scratch)
            if m < 0:
                detail[0] = pos
                return pos, k, BAD_LZ4
            vec, n = _events_vector(scratch, 0, m)
        else:
            vec, n = _events_vector(buf, body, body + size)
        if n < 0:
            pos = body + size  # a packet without elements
            continue
        if vec < 0:
            detail[0] = pos
            return pos, k, BAD_FLATBUFFER
        if sid == trigger_id:
            skipped[min(sid, nskip - 1)] += 1
            detail[3] += n
            pos = body + size
            continue
        if k + n > cap:
            detail[0] = n
            return pos, k, OUT_FULL
        if lz4:
            last_t, bad = _copy_events(scratch, vec, n, outb, k, detail[1], width, height)
        else:
            last_t, bad = _copy_events(buf, vec, n, outb, k, detail[1], width, height)
        detail[1] = last_t
        detail[2] |= bad
        k += n
        pos = body + size
