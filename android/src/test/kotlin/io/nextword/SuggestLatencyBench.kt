package io.nextword

import org.junit.Test

/**
 * Time of one `suggest` call on one thread from the JVM, through JNA and the generated
 * bindings: the same texts and counts as `bindings/examples/suggest_latency.rs`, so the
 * difference is the cost of crossing the FFI (arguments and results serialised, JNA call).
 * Prints figures, asserts nothing about time; excluded from `mvn test`, run it with
 * `mvn -B test -Dnextword.rust.profile=release -Dtest=SuggestLatencyBench`.
 */
class SuggestLatencyBench {
    private val sentence = "I will see you tomorrow at the station"

    @Test
    fun suggestLatency() {
        NextWord.open(NextWordTest.bundleDir).use { nextWord ->
            val keystrokes = (1..sentence.length).map { sentence.substring(0, it) }
            val empty = timePerCall(20_000) { nextWord.suggestBlocking("I will see you tom", 0) }
            val repeated = timePerCall(2_000) { nextWord.suggestBlocking("I will see you tom", 3) }
            var i = 0
            val typing = timePerCall(20 * keystrokes.size) {
                nextWord.suggestBlocking(keystrokes[i++ % keystrokes.size], 3)
            }
            println("jvm   max 0         : %8.1f us/call".format(empty))
            println("jvm   repeated text : %8.1f us/call".format(repeated))
            println("jvm   typing        : %8.1f us/call".format(typing))
        }
    }

    private fun timePerCall(calls: Int, call: () -> Unit): Double {
        repeat(calls / 10) { call() }
        val start = System.nanoTime()
        repeat(calls) { call() }
        return (System.nanoTime() - start) / 1e3 / calls
    }
}
