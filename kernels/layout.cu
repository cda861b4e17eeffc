// Concatenation and split along the last axis: a strided copy of `rows × width` columns.
extern "C" __global__ void copy_columns(const float* src, u64 src_stride, u64 src_offset,
                                        float* dst, u64 dst_stride, u64 dst_offset, u64 rows,
                                        u64 width) {
    GRID_LOOP(i, rows * width) {
        u64 r = i / width, c = i - r * width;
        dst[r * dst_stride + dst_offset + c] = src[r * src_stride + src_offset + c];
    }
}
