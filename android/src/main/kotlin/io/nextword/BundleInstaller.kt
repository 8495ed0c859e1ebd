package io.nextword

import java.io.File
import java.io.FileNotFoundException
import java.io.IOException
import java.io.InputStream

/**
 * Puts a model bundle shipped inside the app (APK assets) where the native library can read
 * it: a plain directory in the app's files dir. The native side reads files by path, and
 * assets are not files, so they are copied once; a bundle whose manifest.json is unchanged
 * is not copied again.
 *
 * The copy goes to a temporary sibling directory which is then renamed into place, so an app
 * killed mid-copy never leaves a half bundle behind (the native side verifies every file's
 * SHA-256 on open anyway).
 */
object BundleInstaller {
    /** The signature beside the manifest; unsigned development bundles have none. */
    const val SIGNATURE = "manifest.sig"

    /** A file entry of the manifest's `files` object: name and SHA-256. */
    private val FILE_ENTRY = Regex("\"([^\"]+)\"\\s*:\\s*\"[0-9a-f]{64}\"")

    /** The files a bundle's manifest lists (each with its SHA-256), manifest.json first. */
    @JvmStatic
    fun filesOf(manifest: ByteArray): List<String> =
        listOf("manifest.json") + FILE_ENTRY.findAll(manifest.decodeToString()).map { it.groupValues[1] }

    /**
     * Copies the bundle files opened by [openSource] (by file name) into [target] unless
     * [target] already holds a bundle with the same manifest; returns [target].
     */
    @JvmStatic
    @Throws(IOException::class)
    fun install(target: File, openSource: (fileName: String) -> InputStream): File {
        val manifest = openSource("manifest.json").use { it.readBytes() }
        val installed = File(target, "manifest.json")
        if (installed.isFile && installed.readBytes().contentEquals(manifest)) return target

        val parent = target.absoluteFile.parentFile
            ?: throw IOException("no parent directory for $target")
        if (!parent.isDirectory && !parent.mkdirs()) throw IOException("cannot create $parent")
        val staging = File(parent, "${target.name}.partial")
        staging.deleteRecursively()
        if (!staging.mkdirs()) throw IOException("cannot create $staging")
        for (name in filesOf(manifest)) {
            openSource(name).use { input ->
                File(staging, name).outputStream().use { input.copyTo(it) }
            }
        }
        try {
            openSource(SIGNATURE).use { input ->
                File(staging, SIGNATURE).outputStream().use { input.copyTo(it) }
            }
        } catch (_: FileNotFoundException) {
            // An unsigned bundle: the native side refuses it unless the app allows unsigned ones.
        }
        target.deleteRecursively()
        if (!staging.renameTo(target)) throw IOException("cannot move $staging to $target")
        return target
    }
}
