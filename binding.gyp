{
  "targets": [
    {
      "target_name": "netmap",
      "sources": [
        "cpp/addon.cc",
        "cpp/abi_export.cc",
        "cpp/fdio.cc",
        "cpp/region.cc",
        "cpp/region_napi.cc",
        "cpp/pipe.cc",
        "cpp/kernel_port.cc",
        "cpp/pktgen.cc",
        "cpp/switch_core.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-O3"]
    }
  ]
}
