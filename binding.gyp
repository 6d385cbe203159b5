{
  "target_defaults": {
    "include_dirs": ["cpp"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
    "cflags_cc!": ["-std=gnu++17"],
    "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-O3"]
  },
  "targets": [
    {
      "target_name": "netmap_core",
      "type": "static_library",
      "sources": ["cpp/core/region.cc", "cpp/core/pipe.cc", "cpp/core/kernel_port.cc", "cpp/core/port_client.cc",
                  "cpp/core/offload.cc", "cpp/core/port_pump.cc", "cpp/core/tap_driver.cc", "cpp/core/socket_netdev_driver.cc",
                  "cpp/core/afpacket_driver.cc", "cpp/core/tap_twin.cc",
                  "cpp/core/vhost_user.cc", "cpp/core/switch_core.cc",
                  "cpp/core/pcap_filter.cc", "cpp/core/vxlan_driver.cc", "cpp/core/shortcut_ring.cc",
                  "cpp/core/shortcut_peer.cc", "cpp/core/shared_bell.cc"],
      "cflags": ["-fPIC"],
      "cflags_cc": ["-fno-exceptions", "-fvisibility=hidden"]
    },
    {
      "target_name": "netmap",
      "sources": [
        "cpp/napi/addon.cc",
        "cpp/napi/abi_export.cc",
        "cpp/napi/fdio.cc",
        "cpp/napi/region_napi.cc",
        "cpp/napi/pipe.cc",
        "cpp/napi/kernel_port.cc",
        "cpp/napi/kernel_ctl.cc",
        "cpp/napi/switch_core.cc",
        "cpp/napi/port_drivers.cc",
        "cpp/napi/afpacket.cc",
        "cpp/napi/vhost_user.cc",
        "cpp/napi/capture.cc",
        "cpp/napi/shortcut_ring.cc",
        "cpp/core/afxdp_driver.cc"
      ],
      "cflags": ["<!@(pkg-config --cflags libxdp libbpf 2>/dev/null || true)"],
      "defines": ["NM_HAVE_LIBXDP=<!(pkg-config --exists libxdp libbpf 2>/dev/null && echo 1 || echo 0)"],
      "libraries": ["-ldl", "<!@(pkg-config --libs libxdp libbpf 2>/dev/null || true)"],
      "dependencies": [
        "netmap_core",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ]
    },
    {
      "target_name": "netmap_tools",
      "sources": ["cpp/tools/addon.cc", "cpp/tools/pktgen.cc", "cpp/tools/pipe_bench.cc"],
      "dependencies": [
        "netmap_core",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ]
    },
    {
      "target_name": "vale-ts-netmap",
      "type": "shared_library",
      "product_name": "vale-ts-netmap",
      "product_prefix": "lib",
      "sources": [
        "cpp/preload/interpose.cc",
        "cpp/preload/device.cc",
        "cpp/preload/vale_control.cc",
        "cpp/preload/json.cc"
      ],
      "dependencies": ["netmap_core"],
      "cflags_cc": ["-fno-exceptions", "-fno-rtti", "-fvisibility=hidden"],
      "ldflags": ["-static-libstdc++", "-static-libgcc", "-Wl,--no-undefined", "-Wl,--version-script=<(module_root_dir)/cpp/preload/exports.map"],
      "libraries": ["-ldl"]
    }
  ]
}
