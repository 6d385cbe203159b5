{
  "targets": [
    {
      "target_name": "netmap",
      "sources": [
        "cpp/napi/addon.cc",
        "cpp/napi/abi_export.cc",
        "cpp/napi/fdio.cc",
        "cpp/core/region.cc",
        "cpp/napi/region_napi.cc",
        "cpp/napi/pipe.cc",
        "cpp/napi/kernel_port.cc",
        "cpp/tools/pktgen.cc",
        "cpp/core/switch_core.cc",
        "cpp/napi/switch_core.cc"
      ],
      "include_dirs": ["cpp", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-O3"]
    }
  ]
}
