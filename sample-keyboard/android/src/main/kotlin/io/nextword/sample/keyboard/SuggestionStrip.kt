package io.nextword.sample.keyboard

import android.content.Context
import android.view.Gravity
import android.widget.LinearLayout
import android.widget.TextView

/**
 * The row of three suggestion slots above the keys; the best suggestion sits in the middle.
 * A tap picks the slot's word, a long press hands it to [onLongPress] (block / forget).
 */
class SuggestionStrip(
    context: Context,
    private val onPick: (String) -> Unit,
    private val onLongPress: (String) -> Unit,
) : LinearLayout(context) {
    private val slots = List(SLOTS) {
        TextView(context).apply {
            gravity = Gravity.CENTER
            textSize = 18f
            setPadding(0, PADDING, 0, PADDING)
            setOnClickListener { view -> (view as TextView).text.toString().takeIf { it.isNotEmpty() }?.let(onPick) }
            setOnLongClickListener { view ->
                val word = (view as TextView).text.toString()
                if (word.isNotEmpty()) onLongPress(word)
                word.isNotEmpty()
            }
        }
    }

    init {
        orientation = HORIZONTAL
        for (slot in slots) addView(slot, LayoutParams(0, LayoutParams.WRAP_CONTENT, 1f))
    }

    /** Words in slot order, left to right; empty slots are "". */
    val shown: List<String> get() = slots.map { it.text.toString() }

    /** Shows up to three words, best first: best in the middle, second left, third right. */
    fun show(words: List<String>) {
        val ranked = words.take(SLOTS)
        for ((slot, rank) in SLOT_OF_RANK.withIndex()) {
            slots[slot].text = ranked.getOrNull(rank) ?: ""
        }
    }

    fun clear() = show(emptyList())

    /** Taps the slot at [index] (0 = left), as a user's finger would. */
    fun tap(index: Int) = slots[index].performClick()

    /** Long-presses the slot at [index] (0 = left). */
    fun longPress(index: Int) = slots[index].performLongClick()

    private companion object {
        const val SLOTS = 3
        const val PADDING = 12
        /** For slot 0, 1, 2 (left to right): which rank it shows. */
        val SLOT_OF_RANK = listOf(1, 0, 2)
    }
}
