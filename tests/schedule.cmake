# schedule.cmake: one ctest a case of the shared schedule cases
# (../shared/testdata/cases/schedules.json). schedule.case.N runs the real
# binary on case N through tests/integration/test_schedule.py --case N and
# checks the validity and the exact fire times it prints; the unit test
# unit.schedule_cases checks the same cases against the library. The count
# of cases is read when CMake configures, and a change to the file
# configures again.
set(SCHEDULE_CASES ${JOBHOST_SHARED}/testdata/cases/schedules.json)
set(SCHEDULE_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_schedule.py)

if(EXISTS ${SCHEDULE_CASES})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
    ${SCHEDULE_CASES})
  file(READ ${SCHEDULE_CASES} schedule_json)
  string(JSON schedule_count LENGTH "${schedule_json}")
else()
  set(schedule_count 0)
endif()

if(schedule_count EQUAL 0)
  # Not a silent pass: case 0 is checked and says the file is missing
  # (skipped, or failed under CI).
  set(schedule_count 1)
endif()
math(EXPR schedule_last "${schedule_count} - 1")
foreach(i RANGE ${schedule_last})
  add_test(NAME schedule.case.${i}
    COMMAND ${PYTHON} ${SCHEDULE_SCRIPT} --case ${i})
  set_tests_properties(schedule.case.${i} PROPERTIES
    ENVIRONMENT "${TEST_ENV}" LABELS schedule SKIP_RETURN_CODE 77)
endforeach()

# The benchmark: 1,000 fire times of each of a dozen expressions.
# `cmake --build BUILD --target bench-schedule` prints the figures;
# bench.schedule fails when any takes 10 ms or more.
add_executable(bench_schedule
  ${CMAKE_SOURCE_DIR}/bench/schedule/bench_schedule.c)
target_compile_options(bench_schedule PRIVATE ${JOBHOST_WARNINGS})
target_link_libraries(bench_schedule PRIVATE jobhost_core)
add_custom_target(bench-schedule COMMAND bench_schedule DEPENDS bench_schedule
  COMMENT "Timing 1,000 fire times per schedule expression")
add_test(NAME bench.schedule COMMAND bench_schedule --check 10)
set_tests_properties(bench.schedule PROPERTIES LABELS schedule)
