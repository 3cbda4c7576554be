// The 2:4 sparse FP8 GEMM of act24 on sm90a: D = (a_scale ⊙ A) · (B ⊙ b_scale), bf16 out.
//
// A (M x K) is 2:4 sparse along K, given packed the way CUTLASS's sm90 sparse GEMM reads it (values M x K/2
// row-major, metadata in CUTLASS's reordered 64 x 128 atoms): the layout act24's fused kernels write. B is
// (K x N) column-major (the transpose of a contiguous N x K tensor). a_scale has one float per row of A,
// b_scale one per column of B; both are applied to the fp32 accumulators in the epilogue.
//
// One configuration (tile, cluster, schedule) per compilation: the build compiles this file once per entry of
// act24.kernels.sm90_gemm.CONFIGS, each with its -D flags, and links the objects into one library. Every entry
// point is `extern "C"` with a suffix naming the configuration, so the library has no C++ ABI to match.

#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_visitor_compute_tma_warpspecialized.hpp"
#include "cutlass/epilogue/fusion/sm90_visitor_load_tma_warpspecialized.hpp"
#include "cutlass/epilogue/fusion/sm90_visitor_tma_warpspecialized.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/kernel_hardware_info.h"
#include "cutlass/util/packed_stride.hpp"

#ifndef ACT24_CONFIG
#error "compile with -DACT24_CONFIG=<name> -DTILE_M= -DTILE_N= -DTILE_K= -DCLUSTER_M= -DCLUSTER_N= -DPINGPONG="
#endif

#define ACT24_CAT2(a, b) a##b
#define ACT24_CAT(a, b) ACT24_CAT2(a, b)
#define ACT24_ENTRY(fn) ACT24_CAT(fn, ACT24_CONFIG)

using namespace cute;

// A namespace per configuration (not an anonymous one: nvcc's host stubs cannot name a kernel instantiated with types
// of an anonymous namespace, which the cluster occupancy query below needs).
namespace ACT24_CAT(act24_, ACT24_CONFIG) {

using ElementA = cutlass::float_e4m3_t;
using ElementB = cutlass::float_e4m3_t;
using ElementD = cutlass::bfloat16_t;
using ElementAcc = float;

using TileShape = Shape<Int<TILE_M>, Int<TILE_N>, Int<TILE_K>>;
using ClusterShape = Shape<Int<CLUSTER_M>, Int<CLUSTER_N>, _1>;

#if PINGPONG
using MainloopSchedule = cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8FastAccum;
using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecialized;
#else
using MainloopSchedule = cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum;
using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecializedCooperative;
#endif

template <class T>
struct Identity {
  CUTLASS_HOST_DEVICE T operator()(T x) const { return x; }
};

// D = bf16(b_scale[n] * (a_scale[m] * acc)): the same order of multiplications as the dense row-wise FP8 GEMM.
namespace fusion = cutlass::epilogue::fusion;
using Acc = fusion::Sm90AccFetch;
using RowScaleA = fusion::Sm90ColBroadcast<0, TileShape, float>;  // one value per row of D
using ColScaleB = fusion::Sm90RowBroadcast<0, TileShape, float>;  // one value per column of D
using Mul = fusion::Sm90Compute<cutlass::multiplies, float, float, cutlass::FloatRoundStyle::round_to_nearest>;
using ToBf16 = fusion::Sm90Compute<Identity, ElementD, float, cutlass::FloatRoundStyle::round_to_nearest>;
using ScaleEpilogue = fusion::Sm90EVT<ToBf16, fusion::Sm90EVT<Mul, ColScaleB, fusion::Sm90EVT<Mul, RowScaleA, Acc>>>;

constexpr int kAlignD = 8;  // 16-byte rows of bf16 for the TMA store

using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp, TileShape, ClusterShape,
    cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, float,
    ElementD, cutlass::layout::RowMajor, kAlignD, ElementD, cutlass::layout::RowMajor, kAlignD,
    EpilogueSchedule, ScaleEpilogue>::CollectiveOp;

using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp,
    ElementA, cutlass::layout::RowMajor, 32, ElementB, cutlass::layout::ColumnMajor, 16, ElementAcc,
    TileShape, ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename CollectiveEpilogue::SharedStorage))>,
    MainloopSchedule>::CollectiveOp;

using GemmKernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                        CollectiveEpilogue, cutlass::gemm::PersistentScheduler>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
using ElementE = typename CollectiveMainloop::ElementE;
using SparseConfig = typename CollectiveMainloop::SparseConfig;

int sm_count() {
  static int count = 0;  // one query per process: the GPU does not change under a running program
  if (count == 0) {
    int device = 0;
    cudaGetDevice(&device);
    count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(device);
  }
  return count;
}

// How many clusters of this kernel fit on the GPU at once, with its shared memory: the persistent scheduler launches
// no more (with only the SM count it may launch more clusters than fit, and the extra ones run as a second wave).
int max_active_clusters() {
  static int clusters = -1;
  if (clusters < 0) {
    const void* kernel = reinterpret_cast<const void*>(cutlass::device_kernel<GemmKernel>);
    int smem = static_cast<int>(GemmKernel::SharedStorageSize);
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(CLUSTER_M, CLUSTER_N, 1);
    config.blockDim = dim3(GemmKernel::MaxThreadsPerBlock, 1, 1);
    config.dynamicSmemBytes = smem;
    cudaLaunchAttribute cluster;
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = CLUSTER_M;
    cluster.val.clusterDim.y = CLUSTER_N;
    cluster.val.clusterDim.z = 1;
    config.attrs = &cluster;
    config.numAttrs = 1;
    int n = 0;
    clusters = cudaOccupancyMaxActiveClusters(&n, kernel, &config) == cudaSuccess ? n : 0;
    cudaGetLastError();  // a failed query leaves 0: the scheduler then sizes the grid from the SM count
  }
  return clusters;
}

typename Gemm::Arguments make_arguments(const void* a, const void* e, const void* b, const float* a_scale,
                                        const float* b_scale, void* d, int m, int n, int k, int raster,
                                        int swizzle, int sms) {
  auto problem = make_shape(m, n, k, 1);
  typename Gemm::Arguments args;
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = problem;
  args.mainloop.ptr_A = static_cast<const ElementA*>(a);
  args.mainloop.layout_a = SparseConfig::fill_layoutA(problem);
  args.mainloop.ptr_B = static_cast<const ElementB*>(b);
  args.mainloop.dB = cutlass::make_cute_packed_stride(typename GemmKernel::StrideB{}, make_shape(n, k, 1));
  args.mainloop.ptr_E = static_cast<const ElementE*>(e);
  args.mainloop.layout_e = SparseConfig::fill_layoutE(problem);
  args.epilogue.ptr_C = nullptr;
  args.epilogue.dC = cutlass::make_cute_packed_stride(typename GemmKernel::StrideC{}, make_shape(m, n, 1));
  args.epilogue.ptr_D = static_cast<ElementD*>(d);
  args.epilogue.dD = cutlass::make_cute_packed_stride(typename GemmKernel::StrideD{}, make_shape(m, n, 1));
  auto& mul_b = args.epilogue.thread.op_0;  // ToBf16(Mul(ColScaleB, Mul(RowScaleA, Acc)))
  mul_b.op_0 = {b_scale, 1.0f};
  mul_b.op_1.op_0 = {a_scale, 1.0f};
  args.hw_info.device_id = 0;
  cudaGetDevice(&args.hw_info.device_id);
  // sms > 0 caps the persistent grid at that many SMs (a launch parameter the search may try)
  args.hw_info.sm_count = sms > 0 ? sms : sm_count();
  int fit = max_active_clusters(), capped = sms / (CLUSTER_M * CLUSTER_N);
  args.hw_info.max_active_clusters = sms > 0 && (fit == 0 || capped < fit) ? capped : fit;
  args.scheduler.max_swizzle_size = swizzle;
  using Raster = decltype(args.scheduler.raster_order);
  args.scheduler.raster_order = raster == 0 ? Raster::AlongM : (raster == 1 ? Raster::AlongN : Raster::Heuristic);
  return args;
}

void write_error(char* err, int err_len, const char* what, cutlass::Status status) {
  if (err && err_len > 0) {
    snprintf(err, err_len, "%s: %s", what, cutlass::cutlassGetStatusString(status));
  }
}

}  // namespace act24_<config>

using namespace ACT24_CAT(act24_, ACT24_CONFIG);

extern "C" {

// Bytes of workspace the GEMM needs for this problem (the persistent scheduler's), before launching it.
size_t ACT24_ENTRY(act24_sp24_fp8_workspace_)(int m, int n, int k, int raster, int swizzle, int sms) {
  auto args = make_arguments(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, m, n, k, raster, swizzle, sms);
  return Gemm::get_workspace_size(args);
}

// 0 on success; otherwise a CUTLASS status code, with a sentence in `err`.
int ACT24_ENTRY(act24_sp24_fp8_gemm_)(const void* a, const void* e, const void* b, const float* a_scale,
                                        const float* b_scale, void* d, int m, int n, int k, int raster,
                                        int swizzle, int sms, void* workspace, void* stream, char* err,
                                        int err_len) {
  auto args = make_arguments(a, e, b, a_scale, b_scale, d, m, n, k, raster, swizzle, sms);
  Gemm gemm;
  cutlass::Status status = gemm.can_implement(args);
  if (status != cutlass::Status::kSuccess) {
    write_error(err, err_len, "can_implement", status);
    return static_cast<int>(status);
  }
  status = gemm.run(args, workspace, static_cast<cudaStream_t>(stream));
  if (status != cutlass::Status::kSuccess) {
    write_error(err, err_len, "run", status);
    return static_cast<int>(status);
  }
  cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess) {
    if (err && err_len > 0) snprintf(err, err_len, "launch: %s", cudaGetErrorString(launched));
    return -1;
  }
  return 0;
}

// Clusters of this configuration that fit on the GPU at once (0: unknown).
int ACT24_ENTRY(act24_sp24_fp8_max_active_clusters_)() { return max_active_clusters(); }

// Bytes of metadata for an (M x K) operand: the size the caller's metadata buffer must have.
size_t ACT24_ENTRY(act24_sp24_fp8_meta_bytes_)(int m, int k) {
  auto layout_e = SparseConfig::fill_layoutE(make_shape(m, 64, k, 1));
  return static_cast<size_t>(cosize(layout_e)) * sizeof_bits_v<ElementE> / 8;
}

}  // extern "C"
