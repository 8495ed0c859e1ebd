package io.nextword

import io.nextword.ffi.LearnedWord
import io.nextword.ffi.LogLevel
import io.nextword.ffi.ModelInfo
import io.nextword.ffi.NextwordException
import io.nextword.ffi.Predictor
import io.nextword.ffi.PredictorConfig
import io.nextword.ffi.Suggestion
import io.nextword.ffi.initLogging
import java.io.Closeable
import java.io.File
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/**
 * On-device next-word prediction for one keyboard: an open model bundle.
 *
 * Every method is safe from any thread. [suggest] runs on a background dispatcher that lets
 * one call of this instance run at a time (the native predictor serialises its calls anyway,
 * so more threads would only wait), so it is safe to call from the main thread.
 *
 * Errors are [NextwordException]s: `BundleNotFound`, `BundleInvalid`, `BundleTampered`,
 * `InvalidInput`, `Inference`, `Io`, and `Closed` after [close].
 */
class NextWord private constructor(
    private val predictor: Predictor,
    private val dispatcher: CoroutineDispatcher,
) : Closeable {

    companion object {
        /** The tuned search settings; copy and change fields to tune. */
        @JvmStatic
        fun defaultConfig(): PredictorConfig = io.nextword.ffi.defaultConfig()

        /**
         * Opens and verifies the bundle directory (manifest.json, model.onnx, tokenizer.json).
         * Reads and checks the whole bundle: call it off the main thread, or use [openAsync].
         *
         * @throws NextwordException if the bundle is missing, invalid or tampered with.
         */
        @JvmStatic
        @JvmOverloads
        fun open(
            bundleDir: File,
            config: PredictorConfig = defaultConfig(),
            dispatcher: CoroutineDispatcher = Dispatchers.Default,
        ): NextWord = NextWord(
            Predictor.open(bundleDir.path, config),
            dispatcher.limitedParallelism(1),
        )

        /** [open] on [Dispatchers.IO]. */
        suspend fun openAsync(
            bundleDir: File,
            config: PredictorConfig = defaultConfig(),
        ): NextWord = withContext(Dispatchers.IO) { open(bundleDir, config) }

        /**
         * Sends the native library's log to logcat (tag `nextword`) on Android, or to stderr
         * on a desktop JVM when the `NEXTWORD_LOG` environment variable is set. The logger is
         * installed once per process; later calls change the level.
         */
        @JvmStatic
        fun setLogLevel(level: LogLevel) = initLogging(level)
    }

    /** Model id, language, parameter count and vocabulary size of the open bundle. */
    val info: ModelInfo
        get() = predictor.info()

    /**
     * Up to [max] suggestions, best first, for the text before the cursor: next words after a
     * space, completions of the word being typed otherwise.
     */
    suspend fun suggest(textBeforeCursor: String, max: Int = 3): List<Suggestion> =
        withContext(dispatcher) { suggestBlocking(textBeforeCursor, max) }

    /** [suggest] on the calling thread, for callers with their own threading. */
    fun suggestBlocking(textBeforeCursor: String, max: Int = 3): List<Suggestion> {
        require(max >= 0) { "max must not be negative, was $max" }
        return predictor.suggest(textBeforeCursor, max.toUInt())
    }

    // The user's model (PredictorConfig.userDir; in memory only when it is null). Each call
    // runs on the same one-at-a-time dispatcher as [suggest], so a keyboard can call them
    // from the main thread; writes to userDir are atomic.

    /**
     * Learns text the user committed: call it when text is committed (a word finished, a field
     * left), not per keystroke. False when incognito: nothing was learned or written.
     */
    suspend fun learn(committedText: String): Boolean = onModel { learn(committedText) }

    /** Adds [word] to the user's dictionary; false when incognito. */
    suspend fun addWord(word: String): Boolean = onModel { addWord(word) }

    /** Forgets a learned or added word (long-press "forget"); whether it was known. */
    suspend fun removeWord(word: String): Boolean = onModel { removeWord(word) }

    /** Never suggests [word] again, in any casing (long-press "block"). */
    suspend fun blockWord(word: String): Boolean = onModel { blockWord(word) }

    /** Allows a blocked word again; whether it was blocked. */
    suspend fun unblockWord(word: String): Boolean = onModel { unblockWord(word) }

    /** The user's words, strongest first. */
    suspend fun learnedWords(): List<LearnedWord> = onModel { listLearnedWords() }

    /** Forgets every learned and added word (blocked words stay blocked). */
    suspend fun clearLearned(): Boolean = onModel { clearLearned() }

    /**
     * Incognito for the field being edited (password fields,
     * `IME_FLAG_NO_PERSONALIZED_LEARNING`): nothing is learned or written while it is on;
     * suggestions still work.
     */
    suspend fun setIncognito(on: Boolean) = onModel { setIncognito(on) }

    private suspend fun <T> onModel(call: Predictor.() -> T): T = withContext(dispatcher) { predictor.call() }

    /**
     * Frees the model now, not at garbage collection. Later calls throw
     * [NextwordException.Closed]; a call already running finishes normally. (The small native
     * handle left behind is freed when this object is collected.)
     */
    override fun close() = predictor.release()
}
