# qquant-serve, qquant-client, qquant-bench (tools/serve/). Included by tools/CMakeLists.txt.
set(QQ_SERVE_TOOL_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(qq_serve_rpc STATIC ${QQ_SERVE_TOOL_DIR}/rpc.c)
target_include_directories(qq_serve_rpc PUBLIC ${QQ_SERVE_TOOL_DIR})
target_link_libraries(qq_serve_rpc PUBLIC qq_proto PkgConfig::GRPC)

add_executable(qquant-client ${QQ_SERVE_TOOL_DIR}/client_main.c)
target_link_libraries(qquant-client PRIVATE qq_serve_rpc qq_proto PkgConfig::GRPC)

add_executable(qquant-bench ${QQ_SERVE_TOOL_DIR}/bench_main.c)
target_link_libraries(qquant-bench PRIVATE qq_serve_rpc qq_proto qq_common PkgConfig::GRPC PkgConfig::CJSON Threads::Threads m)

if(QQ_SERVICE_MODEL_READY)
  add_executable(qquant-serve ${QQ_SERVE_TOOL_DIR}/serve_main.c)
  target_link_libraries(qquant-serve PRIVATE qq_service qq_model qq_kernels qq_common Threads::Threads)
endif()
