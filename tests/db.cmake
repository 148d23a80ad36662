# db.cmake: the db binding's C test talks to the throwaway PostgreSQL.
set_tests_properties(unit.db PROPERTIES FIXTURES_REQUIRED pg)

# The rows benchmark: a million rows through db:rows and through
# db:copy_out. `cmake --build BUILD --target bench-rows` prints the
# figures; bench.rows and bench.copy fail when the peak RSS reaches 64 MB.
add_executable(bench_rows ${CMAKE_SOURCE_DIR}/bench/rows/bench_rows.c)
target_compile_options(bench_rows PRIVATE ${JOBHOST_WARNINGS})
target_link_libraries(bench_rows PRIVATE jobhost_core)
add_custom_target(bench-rows
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/with_pg.sh ${PG_ENV}
    $<TARGET_FILE:bench_rows> --mode rows
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/with_pg.sh ${PG_ENV}
    $<TARGET_FILE:bench_rows> --mode copy
  DEPENDS bench_rows USES_TERMINAL)
# Under the sanitizers freed memory sits in quarantine, so RSS says
# nothing there: the runs only have to succeed.
if(JOBHOST_SANITIZE)
  set(BENCH_ROWS_CHECK)
else()
  set(BENCH_ROWS_CHECK --check 64)
endif()
foreach(mode rows copy)
  add_test(NAME bench.${mode}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/with_pg.sh ${PG_ENV}
      $<TARGET_FILE:bench_rows> --mode ${mode} ${BENCH_ROWS_CHECK})
  set_tests_properties(bench.${mode} PROPERTIES FIXTURES_REQUIRED pg
    TIMEOUT 300 LABELS db)
endforeach()
