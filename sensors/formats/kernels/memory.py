"""Raw memory access for the decoders: unaligned loads and stores without numba's negative-index wraparound.

numba indexes arrays with signed integers and adds a wraparound check to every access; the decoders' hot loops
keep their indices in range by construction (each caller states how), so these intrinsics skip the check and
read or write several bytes at once. ``put_dvs`` writes one packed 13-byte ``DVS_EVENT`` record
(``x i2, y i2, t i8, p ?``) into the uint8 view of an event array.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["load_byte", "load_u16", "load_u32", "load8", "store8", "put_dvs", "DVS_RECORD_BYTES"]

DVS_RECORD_BYTES = 13
_I64 = ir.IntType(64)


def _element_ptr(context, builder, arr_type, arr, index):
    ary = context.make_array(arr_type)(context, builder, arr)
    return builder.gep(ary.data, [index])


def _is_array_of(arr, dtype) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == dtype


def _zext_load(bits):
    element = {8: types.uint8, 16: types.uint16, 32: types.uint32}[bits]

    def make(typingctx, arr, index):
        if not _is_array_of(arr, element):
            return None  # numba then reports "no implementation" for this argument type
        sig = types.int64(arr, types.intp)

        def codegen(context, builder, signature, args):
            ptr = _element_ptr(context, builder, signature.args[0], args[0], args[1])
            ptr = builder.bitcast(ptr, ir.IntType(bits).as_pointer())
            return builder.zext(builder.load(ptr, align=1), _I64)

        return sig, codegen

    return make


load_byte = intrinsic(_zext_load(8))
load_byte.__doc__ = "``arr[i]`` of a uint8 array, zero-extended to int64."
load_u16 = intrinsic(_zext_load(16))
load_u16.__doc__ = "``arr[i]`` of a uint16 array, zero-extended to int64."
load_u32 = intrinsic(_zext_load(32))
load_u32.__doc__ = "``arr[i]`` of a uint32 array, zero-extended to int64."


@intrinsic
def load8(typingctx, arr, index):
    """8 bytes at byte ``index`` of a uint8 array, as uint64 (unaligned)."""
    if not _is_array_of(arr, types.uint8):
        return None
    sig = types.uint64(arr, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _element_ptr(context, builder, signature.args[0], args[0], args[1])
        return builder.load(builder.bitcast(ptr, _I64.as_pointer()), align=1)

    return sig, codegen


@intrinsic
def store8(typingctx, arr, index, value):
    """Store a uint64 as 8 bytes at byte ``index`` of a uint8 array (unaligned)."""
    if not _is_array_of(arr, types.uint8):
        return None
    sig = types.void(arr, types.intp, types.uint64)

    def codegen(context, builder, signature, args):
        ptr = _element_ptr(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, _I64.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def put_dvs(typingctx, outb, k, xy, t, p):
    """Write record ``k`` of a packed DVS_EVENT array seen as uint8: ``xy = x | y << 16``, ``t``, ``p`` (0/1)."""
    if not _is_array_of(outb, types.uint8):
        return None
    sig = types.void(outb, types.intp, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        base = builder.gep(ary.data, [builder.mul(args[1], ir.Constant(_I64, DVS_RECORD_BYTES))])
        builder.store(builder.trunc(args[2], ir.IntType(32)), builder.bitcast(base, ir.IntType(32).as_pointer()), align=1)
        at_t = builder.gep(base, [ir.Constant(_I64, 4)])
        builder.store(args[3], builder.bitcast(at_t, _I64.as_pointer()), align=1)
        at_p = builder.gep(base, [ir.Constant(_I64, 12)])
        builder.store(builder.trunc(args[4], ir.IntType(8)), at_p, align=1)
        return context.get_dummy_value()

    return sig, codegen
