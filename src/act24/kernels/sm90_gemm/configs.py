"""The compiled configurations of the sm90a 2:4 FP8 GEMM: one CUTLASS kernel each, chosen per problem shape."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GemmConfig:
    """Tile (M x N x K, K in logical FP8 elements), cluster (M x N CTAs) and mainloop schedule of one kernel.

    Tile K stays at 128 or more: CUTLASS's sm90 metadata atom is 64 x min(tile K, 128), and 128 is the layout the
    fused kernels write (`act24.kernels.sm90_layout`)."""

    tile_m: int
    tile_n: int
    tile_k: int = 128
    cluster_m: int = 1
    cluster_n: int = 1
    pingpong: bool = False  # two warpgroups on two tiles, one's epilogue under the other's math; else cooperative

    @property
    def name(self) -> str:
        kind = "pp" if self.pingpong else "co"
        return f"t{self.tile_m}x{self.tile_n}x{self.tile_k}_c{self.cluster_m}x{self.cluster_n}_{kind}"

    def defines(self) -> list[str]:
        return [f"-DACT24_CONFIG={self.name}", f"-DTILE_M={self.tile_m}", f"-DTILE_N={self.tile_n}",
                f"-DTILE_K={self.tile_k}", f"-DCLUSTER_M={self.cluster_m}", f"-DCLUSTER_N={self.cluster_n}",
                f"-DPINGPONG={int(self.pingpong)}"]


CONFIGS: tuple[GemmConfig, ...] = (
    GemmConfig(128, 256, cluster_m=2),  # the tile and cluster of xformers' and torchao's kernel
    GemmConfig(128, 256, cluster_n=2),
    GemmConfig(256, 128, cluster_m=2),
    GemmConfig(256, 128, cluster_n=2),
    GemmConfig(128, 128, cluster_m=2),
    GemmConfig(128, 128, cluster_n=2),
    GemmConfig(128, 256, 256, cluster_m=2),
    GemmConfig(256, 128, 256, cluster_n=2),
    GemmConfig(256, 128, 256, cluster_m=2),
    GemmConfig(128, 256, cluster_m=2, cluster_n=2),
    GemmConfig(64, 256, cluster_m=2, pingpong=True),
    GemmConfig(128, 128, cluster_n=2, pingpong=True),
)
# Launch parameters tried per configuration at run time (no rebuild): raster orders (0: along M, 1: along N), tile
# swizzles, and SM caps of the persistent grid (0: every SM that fits a cluster; 128: xformers' default).
RASTERS = (0, 1)
SWIZZLES = (1, 4, 8)
SM_CAPS = (0, 128)
