# The synthetic defect generator: library musc_synth (OpenCV core/imgcodecs + Abseil, no LibTorch)
# and the standalone tool musc-synth. Included from client/CMakeLists.txt.
find_package(OpenCV REQUIRED COMPONENTS core imgcodecs)
find_package(CLI11 CONFIG REQUIRED)

add_library(musc_synth STATIC ${CMAKE_CURRENT_LIST_DIR}/synth.cc)
target_include_directories(musc_synth PUBLIC ${PROJECT_SOURCE_DIR} ${OpenCV_INCLUDE_DIRS})
# Pixel values must not depend on the compiler fusing a*b+c into one FMA (clang does by default
# where the target has FMA, e.g. aarch64): synth.cc promises identical pixels on every platform.
target_compile_options(musc_synth PRIVATE -ffp-contract=off)
target_link_libraries(musc_synth PUBLIC opencv_core opencv_imgcodecs absl::status
  absl::statusor absl::strings)

add_executable(musc-synth ${CMAKE_CURRENT_LIST_DIR}/musc_synth_main.cc)
target_link_libraries(musc-synth PRIVATE musc_synth CLI11::CLI11)
