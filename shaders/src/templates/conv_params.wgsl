// The conv params of an implicit-GEMM conv, after the matmul's (at `mm_end(batch)`).
{{cv_layout}}struct ConvParams {
    ch: u32,
    h: i32,
    w: i32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: i32,
    sw: i32,
    pt: i32,
    pl: i32,
    dh: i32,
    dw: i32,
}

fn conv_params() -> ConvParams {
    let cp = mm_end(params[MM_BATCH]);
    var c: ConvParams;
    c.ch = params[cp + CV_CH];
    c.h = i32(params[cp + CV_H]);
    c.w = i32(params[cp + CV_W]);
    c.ow = params[cp + CV_OW];
    c.kh = params[cp + CV_KH];
    c.kw = params[cp + CV_KW];
    c.sh = i32(params[cp + CV_SH]);
    c.sw = i32(params[cp + CV_SW]);
    c.pt = i32(params[cp + CV_PT]);
    c.pl = i32(params[cp + CV_PL]);
    c.dh = i32(params[cp + CV_DH]);
    c.dw = i32(params[cp + CV_DW]);
    return c;
}
