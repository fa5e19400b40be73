# The synthetic defect generator (synth/synth.h): its own LibTorch-free test binary, plus a smoke
# run of the musc-synth tool. Included from tests/CMakeLists.txt.
add_executable(musc_synth_tests ${CMAKE_CURRENT_LIST_DIR}/synth_test.cc)
target_link_libraries(musc_synth_tests PRIVATE musc_synth GTest::gtest GTest::gtest_main)
add_test(NAME musc_synth_tests COMMAND musc_synth_tests)

add_test(NAME musc_synth_cli_smoke
  COMMAND musc-synth --out ${CMAKE_CURRENT_BINARY_DIR}/synth_smoke --category demo --kind object
    --size 64 --good 2 --defective 1 --types scratch,spot,missing,crack --overwrite)
set_tests_properties(musc_synth_cli_smoke PROPERTIES
  PASS_REGULAR_EXPRESSION "wrote 2 good \\+ 4×1 defective object images")
