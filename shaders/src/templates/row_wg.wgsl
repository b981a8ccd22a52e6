// A row reduction across one workgroup of {{wg}} invocations: each invocation has walked every
// {{wg}}-th element of the row; the workgroup combines their partial results in workgroup memory,
// a tree of log2({{wg}}) steps. Called from uniform control flow (one row a workgroup).
const RW: u32 = {{wg}}u;
var<workgroup> red: array<f32, {{wg}}>;

fn row_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = RW / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn row_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = RW / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
